//! The stats page in a real browser: headless Chromium, driven over the
//! DevTools protocol, logs in with basic auth, ticks the `legacy` server,
//! chooses "Set state to MAINT", clicks Apply, and then every request through
//! the proxy reaches `new-stack`. A screenshot goes to
//! `target/test-artifacts/stats-page.png`.
//!
//! Needs Debian's `chromium` (`scripts/install-test-deps.sh`, run by CI);
//! without it the test fails and says so.
#![allow(clippy::unwrap_used)]

mod admin_support;
mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use admin_support::{Stack, TOKEN};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const DEADLINE: Duration = Duration::from_secs(30);

fn chromium() -> PathBuf {
    [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/lib/chromium/chromium",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
    .unwrap_or_else(|| {
        panic!(
            "chromium is not installed: run scripts/install-test-deps.sh \
                 (CI runs it before the tests); the stats page's browser test needs it"
        )
    })
}

/// Chromium with a fresh profile and the DevTools endpoint it printed.
async fn launch(profile: &Path) -> (Child, String) {
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1600,1000",
            "--remote-debugging-port=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("about:blank")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("chromium starts");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let endpoint = tokio::time::timeout(DEADLINE, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(url) = line.split("DevTools listening on ").nth(1) {
                return url.trim().to_owned();
            }
        }
        panic!("chromium exited without a DevTools endpoint");
    })
    .await
    .expect("chromium prints its DevTools endpoint in time");
    // Keep draining stderr so chromium never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, endpoint)
}

/// A minimal DevTools protocol client over one WebSocket.
struct Cdp {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    session: Option<String>,
}

impl Cdp {
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = &self.session {
            message["sessionId"] = json!(session);
        }
        self.ws
            .send(Message::text(message.to_string()))
            .await
            .unwrap();
        let answer = tokio::time::timeout(DEADLINE, async {
            loop {
                let frame = self.ws.next().await.expect("devtools open").unwrap();
                let Message::Text(text) = frame else { continue };
                let value: Value = serde_json::from_str(&text).unwrap();
                if value["id"] == id {
                    return value;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no answer to {method}"));
        assert!(answer.get("error").is_none(), "{method} failed: {answer}");
        answer["result"].clone()
    }

    /// Evaluates `expression` in the page; returns its value.
    async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
            )
            .await;
        assert!(
            result.get("exceptionDetails").is_none(),
            "{expression}: {result}"
        );
        result["result"]["value"].clone()
    }

    /// Polls `expression` until it is true.
    async fn wait_for(&mut self, what: &str, expression: &str) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            if self.eval(expression).await == json!(true) {
                return;
            }
            let message = self
                .eval("(document.getElementById('message') || {}).textContent || ''")
                .await;
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}; page says {message}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

#[tokio::test]
async fn choosing_maint_on_the_stats_page_takes_the_server_out() {
    let binary = chromium();
    assert!(binary.exists());
    let stack = Stack::start("").await;
    let served = stack.served("/", 4).await;
    assert!(served.iter().any(|s| s == "legacy"), "{served:?}");

    let profile = tempfile::tempdir().unwrap();
    let (mut child, endpoint) = launch(profile.path()).await;
    let (ws, _) = tokio_tungstenite::connect_async(endpoint.as_str())
        .await
        .expect("devtools connects");
    let mut cdp = Cdp {
        ws,
        next_id: 0,
        session: None,
    };
    let target = cdp
        .call("Target.createTarget", json!({ "url": "about:blank" }))
        .await;
    let attached = cdp
        .call(
            "Target.attachToTarget",
            json!({ "targetId": target["targetId"], "flatten": true }),
        )
        .await;
    cdp.session = Some(attached["sessionId"].as_str().unwrap().to_owned());
    cdp.call("Page.enable", json!({})).await;

    // Log in as a browser does: credentials in the URL answer the 401 challenge.
    let admin = stack.proxy.admin.unwrap();
    let login = format!("http://ops:{TOKEN}@{admin}/");
    cdp.call("Page.navigate", json!({ "url": login })).await;
    let row = "document.querySelector('tr[data-backend=\"app\"][data-server=\"legacy\"]')";
    cdp.wait_for(
        "the stats page",
        &format!("document.readyState === 'complete' && !!{row}"),
    )
    .await;

    // Tick legacy, choose "Set state to MAINT", click Apply.
    cdp.eval(&format!("{row}.querySelector('input.sel').click()"))
        .await;
    let chosen = cdp
        .eval(
            "(() => { const s = document.querySelector('section[data-backend=\"app\"] select.action');\
             const o = Array.from(s.options).find(o => o.text === 'Set state to MAINT');\
             if (!o) return false; s.value = o.value;\
             s.dispatchEvent(new Event('change', { bubbles: true })); return s.value; })()",
        )
        .await;
    assert_eq!(
        chosen,
        json!("maint"),
        "the dropdown offers Set state to MAINT"
    );
    cdp.eval("document.querySelector('section[data-backend=\"app\"] button.apply').click()")
        .await;
    cdp.wait_for(
        "the action to be applied",
        "document.getElementById('message').className.includes('ok')",
    )
    .await;
    cdp.wait_for(
        "the page to show legacy in MAINT",
        &format!("!!{row} && {row}.querySelector('.st').textContent === 'MAINT'"),
    )
    .await;

    let legacy = stack.server("app", "legacy").await;
    assert_eq!(legacy["admin_state"], "maint");
    let served = stack.served("/", 6).await;
    assert!(served.iter().all(|s| s == "new-stack"), "{served:?}");

    let shot = cdp
        .call(
            "Page.captureScreenshot",
            json!({ "format": "png", "captureBeyondViewport": true }),
        )
        .await;
    let png = base64_decode(shot["data"].as_str().unwrap());
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("stats-page.png"), png).unwrap();

    cdp.session = None;
    let _closed =
        tokio::time::timeout(Duration::from_secs(5), cdp.call("Browser.close", json!({}))).await;
    let _exited = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
}
