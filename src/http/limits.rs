//! Rate limits per signed-in user and per client address (`cluster::rate_limit`), applied
//! to every `/api/v1` route before its handler runs; and the client address itself, which
//! every per-IP limit keys on (this one, failed logins, sign-ups).
//!
//! The address is the socket's peer. `X-Forwarded-For` is read only when that peer is one
//! of `trusted_proxies`: any client can write the header, and believing it from anyone
//! would let one client be a new address on every request, escaping every per-IP limit.

use super::error::{ApiError, ErrorCode};
use super::state::AppState;
use crate::config::TrustedProxies;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

pub async fn rate_limit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let ip = request_ip(&state, req.extensions(), req.headers());
    // Only a valid token names a user: a forged `sub` must not drain someone else's budget.
    let user = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .and_then(|token| state.auth.verify_access(token.trim()).ok())
        .map(|claims| claims.sub);
    match state.cluster.limiter.check(user, ip).await {
        Ok(()) => next.run(req).await,
        Err((scope, retry_after)) => {
            let message = format!("too many requests from this {}", scope.as_str());
            // A client that waits this long is let through.
            ApiError::new(ErrorCode::RateLimited, message)
                .retry_after(retry_after)
                .into_response()
        }
    }
}

/// The client's address, for handlers with limits of their own (login, sign-up). `None`
/// only when the router is served without connect info (never in `Server::run`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub Option<IpAddr>);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Infallible> {
        Ok(ClientIp(request_ip(
            state,
            &parts.extensions,
            &parts.headers,
        )))
    }
}

fn request_ip(
    state: &AppState,
    extensions: &axum::http::Extensions,
    headers: &HeaderMap,
) -> Option<IpAddr> {
    let peer = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    client_ip(peer, headers, &state.config.trusted_proxies)
}

/// The socket peer, unless it is a trusted proxy: then the right-most address of
/// `X-Forwarded-For` that is not itself a trusted proxy (each proxy appends the address it
/// saw, so everything left of the first untrusted hop is the client's own say), or the
/// left-most when every hop is trusted. An entry that is not an address ends the walk at
/// the hop before it, which a trusted proxy vouched for.
pub fn client_ip(
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    trusted: &TrustedProxies,
) -> Option<IpAddr> {
    let peer = peer?;
    if !trusted.contains(peer) {
        return Some(peer);
    }
    // Several header lines are one list, in order. Lossy: a stray byte a client put on the
    // left must not hide the addresses our proxies appended on the right.
    let lines: Vec<String> = headers
        .get_all("x-forwarded-for")
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    let mut client = peer;
    for hop in lines.iter().rev().flat_map(|line| line.rsplit(',')) {
        let Some(addr) = parse_hop(hop.trim()) else {
            break;
        };
        client = addr;
        if !trusted.contains(addr) {
            break;
        }
    }
    Some(client)
}

/// `1.2.3.4`, `2001:db8::1`, or either with a port (`1.2.3.4:80`, `[2001:db8::1]:80`), as
/// some load balancers write them.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn forwarded(lines: &[&[u8]]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for line in lines {
            headers.append("x-forwarded-for", HeaderValue::from_bytes(line).unwrap());
        }
        headers
    }

    fn proxies(text: &str) -> TrustedProxies {
        TrustedProxies::parse(text).unwrap()
    }

    #[test]
    fn without_trusted_proxies_the_header_is_ignored() {
        let headers = forwarded(&[b"203.0.113.7"]);
        let none = TrustedProxies::default();
        assert_eq!(
            client_ip(Some(ip("10.0.0.1")), &headers, &none),
            Some(ip("10.0.0.1"))
        );
        let other = proxies("10.0.0.2");
        assert_eq!(
            client_ip(Some(ip("10.0.0.1")), &headers, &other),
            Some(ip("10.0.0.1"))
        );
        assert_eq!(client_ip(None, &headers, &other), None);
    }

    #[test]
    fn the_right_most_untrusted_hop_is_the_client() {
        let trusted = proxies("10.0.0.0/8");
        let peer = Some(ip("10.0.0.1"));
        // The client claims 1.1.1.1; our outer proxy 10.0.0.9 saw 203.0.113.7.
        let headers = forwarded(&[b"1.1.1.1, 203.0.113.7", b"10.0.0.9"]);
        assert_eq!(client_ip(peer, &headers, &trusted), Some(ip("203.0.113.7")));
        let all_ours = forwarded(&[b"10.0.0.7, 10.0.0.8"]);
        assert_eq!(client_ip(peer, &all_ours, &trusted), Some(ip("10.0.0.7")));
        assert_eq!(client_ip(peer, &HeaderMap::new(), &trusted), peer);
    }

    #[test]
    fn garbage_and_ports_in_the_header() {
        let trusted = proxies("10.0.0.1");
        let peer = Some(ip("10.0.0.1"));
        let garbage = forwarded(&[b"\xff nonsense, 198.51.100.4"]);
        assert_eq!(
            client_ip(peer, &garbage, &trusted),
            Some(ip("198.51.100.4"))
        );
        let only_garbage = forwarded(&[b"unknown"]);
        assert_eq!(client_ip(peer, &only_garbage, &trusted), peer);
        let ported = forwarded(&[b"[2001:db8::5]:4711, 198.51.100.4:80"]);
        assert_eq!(client_ip(peer, &ported, &trusted), Some(ip("198.51.100.4")));
    }
}
