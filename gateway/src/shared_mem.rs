//! Memory a supervisor shares with its workers (the balance board, the metrics area): a file
//! in memory only, inherited like the sockets, that each process maps for reading and writing.
//! What lives in it is atomics only, so any bit pattern is valid and no process trusts another.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

/// A new zero-filled file of `len` bytes, in memory only (`name` shows in /proc/PID/fd).
pub fn create(name: &str, len: usize) -> io::Result<OwnedFd> {
    let fd = anonymous_file(name)?;
    let len = u64::try_from(len).map_err(|_| io::ErrorKind::InvalidInput)?;
    rustix::fs::ftruncate(&fd, len)?;
    Ok(fd)
}

/// The size of a shared file another process made.
pub fn len(fd: &OwnedFd) -> io::Result<usize> {
    let len = rustix::fs::fstat(fd)?.st_size;
    usize::try_from(len).map_err(|_| io::ErrorKind::InvalidData.into())
}

/// Maps `len` bytes of `fd` shared, for reading and writing, for the rest of the process's
/// life (never unmapped). The address is page-aligned.
pub fn map(fd: &OwnedFd, len: usize) -> io::Result<*const u8> {
    use rustix::mm::{mmap, MapFlags, ProtFlags};
    // SAFETY: a new shared read/write mapping of `len` bytes of the file (sized by `create`,
    // or measured by `len`), so no existing memory is touched.
    let base = unsafe {
        mmap(
            std::ptr::null_mut(),
            len,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::SHARED,
            fd.as_fd(),
            0,
        )?
    };
    Ok(base as *const u8)
}

#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
fn anonymous_file(name: &str) -> io::Result<OwnedFd> {
    use rustix::fs::{memfd_create, MemfdFlags};
    Ok(memfd_create(name, MemfdFlags::CLOEXEC)?)
}

/// Elsewhere: an unlinked temporary file.
#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
fn anonymous_file(_name: &str) -> io::Result<OwnedFd> {
    Ok(OwnedFd::from(tempfile::tempfile()?))
}
