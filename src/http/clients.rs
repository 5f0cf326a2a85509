//! Who is calling: the client IP (from the socket, or from `X-Forwarded-For` when the peer is
//! a trusted proxy) and the per-IP rate limit on the credential endpoints, whose buckets
//! group IPv6 clients by /64 (one subscriber's whole prefix, which one host can cycle
//! through at will).

use std::{
    net::{IpAddr, Ipv6Addr, SocketAddr},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use axum::{
    extract::{ConnectInfo, Request, State},
    http::HeaderMap,
    middleware::Next,
    response::{IntoResponse, Response},
};
use governor::{clock::Clock, DefaultKeyedRateLimiter, Quota};
use ipnet::IpNet;

use super::error::ApiError;

const X_FORWARDED_FOR: &str = "x-forwarded-for";

#[derive(Clone)]
pub struct Clients {
    trusted_proxies: Arc<[IpNet]>,
    limiter: Option<Arc<DefaultKeyedRateLimiter<IpAddr>>>,
    /// Whether the "proxy but no trusted proxies" warning has been logged.
    warned_untrusted_proxy: Arc<AtomicBool>,
}

impl Clients {
    /// `rate_per_min` attempts per client IP per minute (`None`: no limit); the
    /// `X-Forwarded-For` of `trusted_proxies` believed.
    pub fn new(trusted_proxies: &[IpNet], rate_per_min: Option<std::num::NonZeroU32>) -> Self {
        let limiter = rate_per_min
            .map(|per_min| Arc::new(DefaultKeyedRateLimiter::keyed(Quota::per_minute(per_min))));
        Self {
            trusted_proxies: trusted_proxies.into(),
            limiter,
            warned_untrusted_proxy: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The client's address: the peer itself, unless the peer is a trusted proxy; then the
    /// rightmost `X-Forwarded-For` entry that is not a trusted proxy. Entries left of it were
    /// written by the client and prove nothing.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.is_trusted(peer) {
            if self.trusted_proxies.is_empty() && headers.contains_key(X_FORWARDED_FOR) {
                self.warn_of_untrusted_proxy(peer);
            }
            return peer;
        }
        let hops: Vec<&str> = headers
            .get_all(X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        let mut nearest = peer;
        for hop in hops.iter().rev() {
            match hop.parse::<IpAddr>() {
                Ok(ip) if self.is_trusted(ip) => nearest = ip,
                Ok(ip) => return ip,
                // Garbage from a trusted proxy: the last address known to be real.
                Err(_) => return nearest,
            }
        }
        nearest
    }

    /// A private or loopback peer that forwards for others is most likely a reverse proxy
    /// nobody declared: every client behind it then shares its bucket. Said once.
    fn warn_of_untrusted_proxy(&self, peer: IpAddr) {
        let internal = match peer.to_canonical() {
            IpAddr::V4(ip) => ip.is_private() || ip.is_loopback(),
            IpAddr::V6(ip) => ip.is_loopback() || ip.is_unique_local(),
        };
        if internal && !self.warned_untrusted_proxy.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                peer = %peer,
                "a request came through a proxy (X-Forwarded-For) but AUTHD_TRUSTED_PROXIES is empty: \
                 every client behind it shares one address and one rate-limit bucket"
            );
        }
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }

    /// Takes one attempt from `ip`'s bucket; `Err` holds the seconds until the next is allowed.
    pub fn check(&self, ip: IpAddr) -> Result<(), u64> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        limiter.check_key(&bucket(ip)).map_err(|not_until| {
            let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
            wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
        })
    }

    /// Every `every`, forgets buckets that are full again (so memory follows the active
    /// clients only), for as long as the limiter is alive.
    pub fn spawn_pruning(&self, every: Duration) {
        let weak = self.limiter.as_ref().map(Arc::downgrade);
        let Some(weak) = weak else { return };
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let Some(limiter) = weak.upgrade() else {
                    return;
                };
                limiter.retain_recent();
                limiter.shrink_to_fit();
            }
        });
    }
}

/// The rate-limit bucket of a client address: an IPv4 address itself (also when written as
/// IPv4-mapped IPv6), an IPv6 address's /64.
fn bucket(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
    }
}

/// The peer address of the connection a request came on (`ConnectInfo`, which the server
/// sets on every request); unspecified if absent.
pub fn peer_ip(req: &axum::http::Extensions) -> IpAddr {
    req.get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |ConnectInfo(peer)| peer.ip())
}

/// Middleware for the credential endpoints: `429` with `Retry-After` once a client IP has
/// used up its attempts.
pub async fn rate_limit(State(clients): State<Clients>, req: Request, next: Next) -> Response {
    let ip = clients.client_ip(peer_ip(req.extensions()), req.headers());
    if let Err(retry_after_secs) = clients.check(ip) {
        metrics::counter!("authd_rate_limited_total").increment(1);
        tracing::warn!(client_ip = %ip, "rate limit exceeded");
        return ApiError::TooManyRequests { retry_after_secs }.into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn clients(vars: &[(&str, &str)]) -> Clients {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let config = crate::config::Config::from_lookup(|k| vars.get(k).cloned()).unwrap();
        Clients::new(&config.trusted_proxies, config.login_rate())
    }

    fn xff(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(X_FORWARDED_FOR, value.parse().unwrap());
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_ignored_from_untrusted_peers() {
        let c = clients(&[]);
        assert_eq!(
            c.client_ip(ip("203.0.113.9"), &xff("1.2.3.4")),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let c = clients(&[("AUTHD_TRUSTED_PROXIES", "10.0.0.0/8")]);
        let peer = ip("10.0.0.2");
        assert_eq!(c.client_ip(peer, &xff("1.2.3.4")), ip("1.2.3.4"));
        // The client wrote "6.6.6.6" itself; the proxy appended the real address.
        assert_eq!(
            c.client_ip(peer, &xff("6.6.6.6, 198.51.100.7, 10.0.0.5")),
            ip("198.51.100.7")
        );
        assert_eq!(c.client_ip(peer, &HeaderMap::new()), peer);
        assert_eq!(c.client_ip(peer, &xff("10.1.1.1")), ip("10.1.1.1"));
        assert_eq!(c.client_ip(peer, &xff("1.2.3.4, garbage")), peer);
        assert_eq!(
            c.client_ip(peer, &xff("::ffff:5.6.7.8")),
            ip("::ffff:5.6.7.8")
        );
    }

    #[test]
    fn an_undeclared_proxy_is_noticed_from_internal_peers_only() {
        let warned = |c: &Clients| c.warned_untrusted_proxy.load(Ordering::Relaxed);
        let c = clients(&[]);
        c.client_ip(ip("203.0.113.9"), &xff("1.2.3.4"));
        assert!(
            !warned(&c),
            "a public client writing the header is no proxy"
        );
        c.client_ip(ip("10.0.0.2"), &HeaderMap::new());
        assert!(!warned(&c));
        c.client_ip(ip("10.0.0.2"), &xff("1.2.3.4"));
        assert!(warned(&c));

        let c = clients(&[("AUTHD_TRUSTED_PROXIES", "10.0.0.0/8")]);
        c.client_ip(ip("127.0.0.1"), &xff("1.2.3.4"));
        assert!(!warned(&c), "proxies are declared");
    }

    #[test]
    fn ipv6_clients_share_a_bucket_per_64() {
        assert_eq!(
            bucket(ip("2001:db8:1:2:aaaa::1")),
            bucket(ip("2001:db8:1:2:ffff:ffff:ffff:ffff"))
        );
        assert_eq!(bucket(ip("2001:db8:1:2::9")), ip("2001:db8:1:2::"));
        assert_ne!(bucket(ip("2001:db8:1:2::1")), bucket(ip("2001:db8:1:3::1")));
        assert_eq!(bucket(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
        assert_ne!(bucket(ip("192.0.2.1")), bucket(ip("192.0.2.2")));

        let c = clients(&[("AUTHD_LOGIN_RATE_PER_MIN", "2")]);
        assert!(c.check(ip("2001:db8:5:6::1")).is_ok());
        assert!(c.check(ip("2001:db8:5:6::2")).is_ok());
        assert!(
            c.check(ip("2001:db8:5:6:7:8:9:a")).is_err(),
            "a third address of the same /64 finds the bucket empty"
        );
        assert!(
            c.check(ip("2001:db8:5:7::1")).is_ok(),
            "the next /64 has its own"
        );
    }

    #[test]
    fn the_bucket_empties_and_says_when_to_retry() {
        let c = clients(&[("AUTHD_LOGIN_RATE_PER_MIN", "3")]);
        let a = ip("192.0.2.1");
        for _ in 0..3 {
            assert!(c.check(a).is_ok());
        }
        let wait = c.check(a).unwrap_err();
        assert!((1..=20).contains(&wait), "{wait}");
        assert!(
            c.check(ip("192.0.2.2")).is_ok(),
            "other clients have their own bucket"
        );
        assert!(clients(&[("AUTHD_LOGIN_RATE_PER_MIN", "0")])
            .check(a)
            .is_ok());
    }
}
