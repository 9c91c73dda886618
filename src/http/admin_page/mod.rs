//! The live operations page (issue 13): a static page, its script and its style sheet,
//! compiled into the binary so an operator opens `/admin` on any node with nothing else to
//! install or build. The assets carry no data and need no token; the page signs in and
//! polls `GET /api/v1/admin/dashboard`, which is where the admin check is.
//!
//! Every asset goes out with the same strict headers: the page runs only its own script and
//! style (no inline code, so an injected string cannot run), talks only to its own origin,
//! cannot be framed (no clickjacking of the sign-in form), and is never cached (a new binary
//! serves a new page at once, and nothing of a session lingers on disk).

use axum::http::header;
use axum::response::{IntoResponse, Response};

const INDEX_HTML: &str = include_str!("index.html");
const APP_JS: &str = include_str!("app.js");
const STYLE_CSS: &str = include_str!("style.css");

/// What the page may load and from where: its own origin only, and nothing inline may run
/// (no `unsafe-inline` for scripts or styles), so text from the data can never become code.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; connect-src 'self'; \
     img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'";

/// `GET /admin`: the page.
pub async fn index() -> Response {
    asset(INDEX_HTML, "text/html; charset=utf-8")
}

/// `GET /admin/app.js`: everything the page does.
pub async fn script() -> Response {
    asset(APP_JS, "text/javascript; charset=utf-8")
}

/// `GET /admin/style.css`
pub async fn style() -> Response {
    asset(STYLE_CSS, "text/css; charset=utf-8")
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}
