//! `--user`, `--group`: who the server runs as once its sockets are bound. Names are looked up
//! at start (a missing user or group refuses the start, naming the option); the switch is
//! supplementary groups (the user's, as `initgroups`), then the group, then the user, and is
//! checked afterwards, so a process that could not drop never imports the app.

use std::ffi::{CStr, CString};

/// Who to become: the result of `--user`/`--group`, looked up once.
#[derive(Debug, Clone)]
pub struct Target {
    /// `None`: only `--group` was given (the user stays).
    uid: Option<u32>,
    gid: u32,
    /// The user's name, for its supplementary groups (`None`: a numeric `--user` with no
    /// password entry, or no `--user`: the only group is `gid`).
    name: Option<CString>,
    /// `user www-data (33), group www-data (33)`, for the log.
    pub shown: String,
}

/// One database entry: what `getpwnam` and friends give.
struct Entry {
    id: u32,
    name: CString,
    /// The user's primary group (users only).
    gid: u32,
}

impl Target {
    /// Looks up `--user` and `--group` (names, or numeric ids). `Ok(None)`: neither given.
    pub fn resolve(user: Option<&str>, group: Option<&str>) -> Result<Option<Target>, String> {
        if user.is_none() && group.is_none() {
            return Ok(None);
        }
        let user = match user {
            Some(spec) => Some(lookup_user(spec)?),
            None => None,
        };
        let group = match group {
            Some(spec) => Some(lookup_group(spec)?),
            None => None,
        };
        let gid = match (&group, &user) {
            (Some((gid, _)), _) => *gid,
            (None, Some((_, Some(entry)))) => entry.gid,
            (None, Some((uid, None))) => {
                return Err(format!(
                    "--user {uid}: no such user in the password database (a numeric user without an entry needs --group)"
                ))
            }
            (None, None) => return Ok(None),
        };
        // The user's own group is named in the log too, if it has a name.
        let group_name = match &group {
            Some((_, name)) => name.clone(),
            None => lookup(Kind::Group, Key::Id(gid))
                .ok()
                .flatten()
                .map(|e| e.name),
        };
        let group_shown = match group_name {
            Some(name) => format!("group {} ({gid})", name.to_string_lossy()),
            None => format!("group {gid}"),
        };
        let shown = match &user {
            Some((uid, Some(e))) => {
                format!("user {} ({uid}), {group_shown}", e.name.to_string_lossy())
            }
            Some((uid, None)) => format!("user {uid}, {group_shown}"),
            None => group_shown,
        };
        Ok(Some(Target {
            uid: user.as_ref().map(|(uid, _)| *uid),
            gid,
            name: user.and_then(|(_, e)| e.map(|e| e.name)),
            shown,
        }))
    }

    /// Whether the user changes (not only the group).
    pub fn changes_user(&self) -> bool {
        self.uid.is_some()
    }

    /// The owner a file or socket made for this server should get (`None` = keep).
    pub fn owner(&self) -> (Option<u32>, u32) {
        (self.uid, self.gid)
    }

    /// Switches this process (every thread of it: the C library's `setuid` covers them).
    /// A process already running as the target (a worker started by a supervisor that
    /// switched, or a server started as that user) has nothing to do: `Ok(false)`.
    pub fn switch(&self) -> Result<bool, String> {
        use rustix::process::{getegid, geteuid, getgid, getuid};
        let uid_now = (getuid().as_raw(), geteuid().as_raw());
        let gid_now = (getgid().as_raw(), getegid().as_raw());
        let uid_ok = self.uid.is_none_or(|u| uid_now == (u, u));
        if uid_now.1 != 0 {
            if uid_ok && gid_now == (self.gid, self.gid) {
                return Ok(false);
            }
            return Err(format!(
                "cannot switch to {}: only root can (this process is uid {})",
                self.shown, uid_now.1
            ));
        }
        let fail = |what: &str| {
            let e = std::io::Error::last_os_error();
            format!("cannot switch to {}: {what}: {e}", self.shown)
        };
        match &self.name {
            // SAFETY: a NUL-terminated name from the password database.
            Some(name) => {
                if unsafe { libc::initgroups(name.as_ptr(), self.gid) } != 0 {
                    return Err(fail("initgroups"));
                }
            }
            // SAFETY: a one-element array that outlives the call.
            None => {
                if unsafe { libc::setgroups(1, &self.gid) } != 0 {
                    return Err(fail("setgroups"));
                }
            }
        }
        // SAFETY: plain system calls (glibc applies them to every thread).
        if unsafe { libc::setgid(self.gid) } != 0 {
            return Err(fail("setgid"));
        }
        if let Some(uid) = self.uid {
            // SAFETY: as setgid.
            if unsafe { libc::setuid(uid) } != 0 {
                return Err(fail("setuid"));
            }
            // The switch must be final: were root still reachable, the drop protects nothing.
            // SAFETY: as setgid; it must fail.
            if uid != 0 && unsafe { libc::setuid(0) } == 0 {
                return Err(format!(
                    "cannot switch to {}: root could be regained",
                    self.shown
                ));
            }
        }
        let uid_now = (getuid().as_raw(), geteuid().as_raw());
        let gid_now = (getgid().as_raw(), getegid().as_raw());
        if self.uid.is_some_and(|u| uid_now != (u, u)) || gid_now != (self.gid, self.gid) {
            return Err(format!(
                "cannot switch to {}: now uid {uid_now:?}, gid {gid_now:?}",
                self.shown
            ));
        }
        Ok(true)
    }
}

/// The warning uWSGI gives: the app is about to run as root and nobody asked for it.
pub fn warn_if_root(user_given: bool) {
    if !user_given && rustix::process::geteuid().is_root() {
        tracing::warn!(
            "running the app as root: give --user (and --group) to run it as an unprivileged user"
        );
    }
}

/// `--umask`: for every file and socket the server and the app create from now on.
pub fn apply_umask(mask: Option<u32>) {
    if let Some(mask) = mask {
        rustix::process::umask(rustix::fs::Mode::from_bits_truncate(mask));
    }
}

/// Hands a file the server opened before the switch (a log) to the target, so the switched
/// process can open it again after a rotation (gunicorn does the same). A file that cannot
/// be changed (`/dev/null`, another owner's) is left as it is.
pub fn hand_over(path: &str, target: &Target) {
    if path == "-" {
        return;
    }
    let (uid, gid) = target.owner();
    let owner = uid.map(rustix::fs::Uid::from_raw);
    if let Err(e) = rustix::fs::chown(path, owner, Some(rustix::fs::Gid::from_raw(gid))) {
        tracing::debug!("cannot hand {path} to {}: {e}", target.shown);
    }
}

/// `spec` as a user: a name, or a number (found in the database or not).
fn lookup_user(spec: &str) -> Result<(u32, Option<Entry>), String> {
    let spec = spec.trim();
    if let Ok(uid) = spec.parse::<u32>() {
        let entry = lookup(Kind::User, Key::Id(uid)).map_err(|e| format!("--user {spec}: {e}"))?;
        return Ok((uid, entry));
    }
    let name = CString::new(spec).map_err(|_| format!("--user {spec:?}: not a user name"))?;
    match lookup(Kind::User, Key::Name(&name)).map_err(|e| format!("--user {spec}: {e}"))? {
        Some(entry) => Ok((entry.id, Some(entry))),
        None => Err(format!("--user {spec}: no such user")),
    }
}

/// `spec` as a group: a name, or a number.
fn lookup_group(spec: &str) -> Result<(u32, Option<CString>), String> {
    let spec = spec.trim();
    if let Ok(gid) = spec.parse::<u32>() {
        let entry =
            lookup(Kind::Group, Key::Id(gid)).map_err(|e| format!("--group {spec}: {e}"))?;
        return Ok((gid, entry.map(|e| e.name)));
    }
    let name = CString::new(spec).map_err(|_| format!("--group {spec:?}: not a group name"))?;
    match lookup(Kind::Group, Key::Name(&name)).map_err(|e| format!("--group {spec}: {e}"))? {
        Some(entry) => Ok((entry.id, Some(entry.name))),
        None => Err(format!("--group {spec}: no such group")),
    }
}

#[derive(Clone, Copy)]
enum Kind {
    User,
    Group,
}

enum Key<'a> {
    Name(&'a CStr),
    Id(u32),
}

/// `getpwnam_r`/`getpwuid_r`/`getgrnam_r`/`getgrgid_r`, growing the buffer while it is too
/// small (a group with many members needs more than the usual 1 KiB). `Ok(None)`: no entry.
fn lookup(kind: Kind, key: Key<'_>) -> Result<Option<Entry>, String> {
    let mut size = 1024usize;
    loop {
        let mut buf = vec![0 as libc::c_char; size];
        let (rc, entry) = match kind {
            Kind::User => {
                // SAFETY: all-zero is a valid `passwd` (null pointers, zero ids).
                let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
                let mut found: *mut libc::passwd = std::ptr::null_mut();
                // SAFETY: every pointer is to a live local; `buf`'s length is passed with it.
                let rc = unsafe {
                    match key {
                        Key::Name(n) => libc::getpwnam_r(
                            n.as_ptr(),
                            &mut pw,
                            buf.as_mut_ptr(),
                            buf.len(),
                            &mut found,
                        ),
                        Key::Id(id) => {
                            libc::getpwuid_r(id, &mut pw, buf.as_mut_ptr(), buf.len(), &mut found)
                        }
                    }
                };
                // SAFETY: on success with an entry, `pw_name` points into `buf`, NUL-terminated.
                let entry = (rc == 0 && !found.is_null() && !pw.pw_name.is_null()).then(|| Entry {
                    id: pw.pw_uid,
                    name: unsafe { CStr::from_ptr(pw.pw_name) }.to_owned(),
                    gid: pw.pw_gid,
                });
                (rc, entry)
            }
            Kind::Group => {
                // SAFETY: all-zero is a valid `group`.
                let mut gr: libc::group = unsafe { std::mem::zeroed() };
                let mut found: *mut libc::group = std::ptr::null_mut();
                // SAFETY: as above.
                let rc = unsafe {
                    match key {
                        Key::Name(n) => libc::getgrnam_r(
                            n.as_ptr(),
                            &mut gr,
                            buf.as_mut_ptr(),
                            buf.len(),
                            &mut found,
                        ),
                        Key::Id(id) => {
                            libc::getgrgid_r(id, &mut gr, buf.as_mut_ptr(), buf.len(), &mut found)
                        }
                    }
                };
                // SAFETY: as above, `gr_name` points into `buf`.
                let entry = (rc == 0 && !found.is_null() && !gr.gr_name.is_null()).then(|| Entry {
                    id: gr.gr_gid,
                    name: unsafe { CStr::from_ptr(gr.gr_name) }.to_owned(),
                    gid: gr.gr_gid,
                });
                (rc, entry)
            }
        };
        match rc {
            0 => return Ok(entry),
            libc::ERANGE if size < (1 << 20) => size = size.saturating_mul(4),
            // "Not found" is reported as one of these by some name services.
            libc::ENOENT | libc::ESRCH | libc::EBADF | libc::EPERM => return Ok(None),
            e => {
                return Err(format!(
                    "cannot look it up: {}",
                    std::io::Error::from_raw_os_error(e)
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Target;

    #[test]
    fn names_and_numbers_are_looked_up() {
        assert!(Target::resolve(None, None).expect("nothing").is_none());
        let root = Target::resolve(Some("root"), None)
            .expect("root exists")
            .expect("a target");
        assert_eq!((root.uid, root.gid), (Some(0), 0));
        let by_id = Target::resolve(Some("0"), Some("0"))
            .expect("uid 0")
            .expect("a target");
        assert_eq!((by_id.uid, by_id.gid), (Some(0), 0));
        assert!(by_id.name.is_some());
        let group_only = Target::resolve(None, Some("0"))
            .expect("gid 0")
            .expect("a target");
        assert_eq!((group_only.uid, group_only.gid), (None, 0));
    }

    #[test]
    fn missing_names_are_refused_naming_the_option() {
        let user = Target::resolve(Some("no-such-user-wsgi-gw"), None).expect_err("no user");
        assert!(
            user.starts_with("--user no-such-user-wsgi-gw: no such user"),
            "{user}"
        );
        let group = Target::resolve(None, Some("no-such-group-wsgi-gw")).expect_err("no group");
        assert!(
            group.starts_with("--group no-such-group-wsgi-gw: no such group"),
            "{group}"
        );
        let numeric = Target::resolve(Some("4000000000"), None).expect_err("no entry, no group");
        assert!(numeric.contains("needs --group"), "{numeric}");
        let numeric = Target::resolve(Some("4000000000"), Some("4000000001"))
            .expect("numbers need no entry")
            .expect("a target");
        assert_eq!((numeric.uid, numeric.gid), (Some(4000000000), 4000000001));
    }
}
