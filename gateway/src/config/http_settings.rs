//! `serve`'s options → the HTTP server's `Settings`: the one place a command-line value becomes
//! a server setting.

use super::{ConfigError, ServeArgs};
use crate::http::{head::HeadLimits, rate::MinRate, Settings};

impl ServeArgs {
    /// The HTTP server's settings. `max_requests`: requests this process serves before it
    /// retires (a supervised worker's `--max-requests` plus its jitter), 0 for no limit.
    pub fn http_settings(&self, max_requests: u64) -> Result<Settings, ConfigError> {
        let script_name = self.script_name()?;
        if self.proxy_protocol
            && self
                .app
                .forwarded_allow_ips
                .trim_matches([',', ' '])
                .is_empty()
        {
            // Every connection would be refused: say so now, not once per connection.
            return Err(ConfigError(
                "--proxy-protocol needs --forwarded-allow-ips: the proxies whose PROXY headers are accepted".into(),
            ));
        }
        Ok(Settings {
            limits: HeadLimits {
                max_request_line: to_usize(self.limit_request_line),
                max_headers: to_usize(self.limit_request_fields),
                max_field_size: to_usize(self.limit_request_field_size),
                max_head_size: to_usize(self.limit_request_head),
            },
            max_body: self.service.max_body_size,
            header_timeout: self.header_timeout,
            proxy_protocol: self.proxy_protocol,
            keepalive_timeout: self.keepalive_timeout,
            body_timeout: self.body_timeout,
            write_timeout: self.write_timeout,
            min_body_rate: MinRate {
                bytes_per_sec: self.min_request_body_rate,
                grace: self.min_rate_grace,
            },
            min_response_rate: MinRate {
                bytes_per_sec: self.min_response_rate,
                grace: self.min_rate_grace,
            },
            write_buffer: self.write_buffer,
            write_buffer_total: self.write_buffer_total,
            stream_nodelay: self.stream_nodelay,
            graceful_timeout: self.graceful_timeout,
            max_connections: to_usize(self.max_connections),
            threads: self.service.threads as usize,
            script_name: script_name.into(),
            max_requests,
        })
    }
}

/// A count from the command line (u64) as a size here: beyond `usize`, no limit is smaller.
fn to_usize(n: impl TryInto<usize>) -> usize {
    n.try_into().unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::schema::tests::serve;
    use crate::http::head::HeadLimits;

    #[test]
    fn the_defaults_are_the_servers_defaults() {
        let s = serve(&[]).http_settings(0).expect("the defaults are valid");
        assert_eq!(s.limits, HeadLimits::default());
        assert_eq!(s.max_body, crate::config::defaults::MAX_BODY_SIZE);
        assert_eq!(s.threads, crate::config::defaults::THREADS as usize);
        assert_eq!(s.graceful_timeout, Duration::from_secs(30));
        assert_eq!(s.script_name, "");
        assert_eq!(s.max_requests, 0);
    }

    #[test]
    fn every_option_lands_in_its_setting() {
        let s = serve(&[
            "--limit-request-line=100",
            "--limit-request-fields=7",
            "--limit-request-field-size=200",
            "--limit-request-head=3000",
            "--max-body-size=5",
            "--header-timeout=1",
            "--keepalive-timeout=2",
            "--body-timeout=3",
            "--write-timeout=4",
            "--min-request-body-rate=11",
            "--min-response-rate=12",
            "--min-rate-grace=6",
            "--write-buffer=13",
            "--write-buffer-total=14",
            "--stream-nodelay",
            "--graceful-timeout=7",
            "--max-connections=15",
            "--threads=16",
            "--script-name=/app/",
        ])
        .http_settings(17)
        .expect("valid options");
        let limits = HeadLimits {
            max_request_line: 100,
            max_headers: 7,
            max_field_size: 200,
            max_head_size: 3000,
        };
        assert_eq!(s.limits, limits);
        assert_eq!(s.max_body, 5);
        let secs = Duration::from_secs;
        assert_eq!(
            [s.header_timeout, s.keepalive_timeout, s.body_timeout],
            [secs(1), secs(2), secs(3)]
        );
        assert_eq!(s.write_timeout, secs(4));
        assert_eq!(s.min_body_rate.bytes_per_sec, 11);
        assert_eq!(s.min_response_rate.bytes_per_sec, 12);
        assert_eq!(s.min_body_rate.grace, secs(6));
        assert_eq!(s.min_response_rate.grace, secs(6));
        assert_eq!((s.write_buffer, s.write_buffer_total), (13, 14));
        assert!(s.stream_nodelay);
        assert_eq!(s.graceful_timeout, secs(7));
        assert_eq!((s.max_connections, s.threads), (15, 16));
        // The mount point loses its trailing `/`.
        assert_eq!(s.script_name, "/app");
        assert_eq!(s.max_requests, 17);
    }

    #[test]
    fn proxy_protocol_needs_trusted_proxies() {
        assert!(
            !serve(&[])
                .http_settings(0)
                .expect("defaults")
                .proxy_protocol
        );
        for words in [
            &["--proxy-protocol"][..],
            &["--proxy-protocol", "--forwarded-allow-ips= , "],
        ] {
            let Err(e) = serve(words).http_settings(0) else {
                panic!("{words:?} was accepted");
            };
            assert!(e.0.contains("--forwarded-allow-ips"), "{}", e.0);
        }
        let s = serve(&["--proxy-protocol", "--forwarded-allow-ips=10.0.0.0/8"]);
        assert!(s.http_settings(0).expect("valid").proxy_protocol);
    }

    #[test]
    fn a_mount_point_without_a_leading_slash_is_refused() {
        let Err(e) = serve(&["--script-name", "app"]).http_settings(0) else {
            panic!("--script-name app was accepted");
        };
        assert_eq!(e.0, "--script-name \"app\": must start with '/'");
    }
}
