//! The operations page at `/admin` (issue 13): its page, script and style sheet are served
//! without a token, from the binary, with the headers that keep the page to its own code.
//! What the page does in a browser is scripts/browser-test.sh's to check.
//!
//! The assets never touch the store, so one backend is enough.

use crate::helpers::*;

const CSP: &str = "default-src 'self'; connect-src 'self'; img-src 'self' data:; \
                   style-src 'self'; script-src 'self'; frame-ancestors 'none'";

/// GETs `path` without a token; the status, the headers and the body.
async fn fetch(app: &TestApp, path: &str) -> (u16, reqwest::header::HeaderMap, String) {
    let response = app.client.get(app.url(path)).send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.text().await.unwrap())
}

fn header<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_page_and_its_assets_are_served_with_strict_headers() {
    run_on(
        Backend::Sqlite,
        &[],
        |_, _| {},
        |app| async move {
            let assets = [
                ("/admin", "text/html"),
                ("/admin/app.js", "text/javascript"),
                ("/admin/style.css", "text/css"),
            ];
            for (path, content_type) in assets {
                let (status, headers, body) = fetch(&app, path).await;
                assert_eq!(status, 200, "{path}: {body}");
                assert!(
                    header(&headers, "content-type").starts_with(content_type),
                    "{path}: {headers:?}"
                );
                assert_eq!(header(&headers, "content-security-policy"), CSP, "{path}");
                assert_eq!(header(&headers, "x-content-type-options"), "nosniff");
                assert_eq!(header(&headers, "cache-control"), "no-store");
                assert_eq!(header(&headers, "referrer-policy"), "no-referrer");
                assert!(!body.trim().is_empty(), "{path} is empty");
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_page_loads_its_own_assets_and_nothing_inline() {
    run_on(
        Backend::Sqlite,
        &[],
        |_, _| {},
        |app| async move {
            let (_, _, html) = fetch(&app, "/admin").await;
            assert!(html.contains(r#"src="/admin/app.js""#), "{html}");
            assert!(html.contains(r#"href="/admin/style.css""#), "{html}");
            // The policy forbids inline code and styles: the page must not need any, and
            // must load nothing from another origin.
            assert!(!html.contains("<script>"), "inline script");
            assert!(!html.contains("<style"), "inline style sheet");
            assert!(!html.contains(" style="), "inline style attribute");
            assert!(!html.contains("http://") && !html.contains("https://"));
            assert!(html.contains(r#"id="sign-in-form""#));

            // The tokens live in the page's memory only (issue 13): nothing that outlives
            // the tab, and nothing in a URL.
            let (_, _, js) = fetch(&app, "/admin/app.js").await;
            for forbidden in [
                "localStorage",
                "sessionStorage",
                "document.cookie",
                "indexedDB",
            ] {
                assert!(!js.contains(forbidden), "app.js uses {forbidden}");
            }
            assert!(js.contains("/admin/dashboard") && js.contains("/auth/login"));
            assert!(!js.contains("?token") && !js.contains("access_token="));
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_the_three_assets_are_served_under_admin() {
    run_on(
        Backend::Sqlite,
        &[],
        |_, _| {},
        |app| async move {
            let (status, _, body) = fetch(&app, "/admin/index.html").await;
            assert_eq!(status, 404, "{body}");
            let reply = app
                .client
                .post(app.url("/admin"))
                .send()
                .await
                .unwrap()
                .status();
            assert_eq!(reply.as_u16(), 405);
        },
    )
    .await;
}
