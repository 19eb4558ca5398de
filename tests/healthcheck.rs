//! `switchyard healthcheck`, the container health check: exit 0 on a 2xx
//! answer, 1 on anything else, against a running proxy's admin `/healthz`
//! and real test backends.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Backend, refused_addr, start_proxy};

/// Runs `switchyard healthcheck` with `args`; returns its exit code and stderr.
async fn healthcheck(args: &[&str]) -> (i32, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("healthcheck")
        .args(args)
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn healthy_admin_server_passes_quietly() {
    let backend = Backend::start("app").await;
    let running = start_proxy(&format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n[[frontend]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\ndefault_backend = \"app\"\n[[backend]]\nname = \"app\"\n[[backend.server]]\nname = \"s1\"\naddress = \"{}\"\n",
        backend.addr
    ))
    .await;
    let admin = running.admin.unwrap();
    let (code, stderr) = healthcheck(&["--url", &format!("http://{admin}/healthz")]).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stderr, "");
    // The readiness probe works the same way.
    let (code, stderr) = healthcheck(&["--url", &format!("http://{admin}/readyz")]).await;
    assert_eq!(code, 0, "{stderr}");
}

#[tokio::test]
async fn anything_but_a_2xx_in_time_fails_and_says_why() {
    let backend = Backend::start("app").await;
    let refused = refused_addr().await;
    let at = |path: &str| format!("http://{}{path}", backend.addr);
    let cases: [(String, &[&str], &str); 5] = [
        (at("/status/204"), &[], ""),
        (at("/status/503"), &[], "answered 503 Service Unavailable"),
        (
            format!("http://{refused}/healthz"),
            &[],
            "cannot connect to",
        ),
        (
            "https://localhost/healthz".to_owned(),
            &[],
            "only http:// URLs",
        ),
        (
            at("/slow/5000"),
            &["--timeout", "200ms"],
            "no answer within 200ms",
        ),
    ];
    for (url, extra, expected) in cases {
        let mut args = vec!["--url", url.as_str()];
        args.extend_from_slice(extra);
        let (code, stderr) = healthcheck(&args).await;
        if expected.is_empty() {
            assert_eq!(code, 0, "{url}: {stderr}");
        } else {
            assert_eq!(code, 1, "{url}: {stderr}");
            assert!(stderr.contains(expected), "{url}: {stderr}");
        }
    }
}
