//! Support for the reload tests: the proxy started from a config file in a
//! directory of its own (so the file watcher sees edits), an admin client,
//! and `edit`, which rewrites the file and waits for the reload's outcome
//! on `GET /api/reload/status`, never on a sleep.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::Value;
use switchyard::app::Running;

use crate::common::{HttpClient, client, eventually, send, start_from_file};

/// The proxy serving `dir/conf/switchyard.toml`, with its state directory in
/// `dir/state`.
pub struct FileStack {
    pub dir: tempfile::TempDir,
    pub file: PathBuf,
    pub proxy: Running,
    pub client: HttpClient,
}

impl FileStack {
    pub async fn start(text: &str) -> FileStack {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("conf")).unwrap();
        let file = dir.path().join("conf").join("switchyard.toml");
        std::fs::write(&file, text).unwrap();
        let proxy = start_from_file(&file, &dir.path().join("state")).await;
        FileStack {
            dir,
            file,
            proxy,
            client: client(),
        }
    }

    /// Starts again on the same files after `shutdown`.
    pub async fn restart(self) -> FileStack {
        let state_dir = self.state_dir();
        let FileStack {
            dir,
            file,
            proxy,
            client,
        } = self;
        proxy.shutdown().await;
        let proxy = start_from_file(&file, &state_dir).await;
        FileStack {
            dir,
            file,
            proxy,
            client,
        }
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Reload attempts so far (ok + failed), from the status endpoint.
    pub async fn attempts(&self) -> u64 {
        let status = self.status().await;
        status["reloads_ok"].as_u64().unwrap() + status["reloads_failed"].as_u64().unwrap()
    }

    pub async fn status(&self) -> Value {
        let (code, json) = self.admin("GET", "/api/reload/status", None).await;
        assert_eq!(code, 200, "{json}");
        json
    }

    /// Waits until more than `before` reloads were attempted; returns the
    /// status then.
    pub async fn reloaded_after(&self, before: u64) -> Value {
        eventually("the file watcher reloads", || async {
            self.attempts().await > before
        })
        .await;
        self.status().await
    }

    /// Rewrites the config file in place and returns the reload's status.
    pub async fn edit(&self, text: &str) -> Value {
        let before = self.attempts().await;
        std::fs::write(&self.file, text).unwrap();
        self.reloaded_after(before).await
    }

    /// Like an editor: writes a temporary file beside it and renames it over.
    pub async fn save_by_rename(&self, text: &str) -> Value {
        let before = self.attempts().await;
        let tmp = self.file.with_extension("toml.swp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &self.file).unwrap();
        self.reloaded_after(before).await
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.proxy.admin.unwrap())
    }

    /// A request to the admin server with the token; returns status, body.
    pub async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        admin(&self.client, &self.admin_url(path), method, body).await
    }
}

/// A request to the admin server at `url` with the test token.
pub async fn admin(
    client: &HttpClient,
    url: &str,
    method: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = Request::builder()
        .method(method)
        .uri(url)
        .header("authorization", "Bearer test-token");
    if body.is_some() {
        request = request
            .header("content-type", "application/json")
            .header("x-switchyard-admin", "1");
    }
    let body = body.map_or_else(String::new, |b| b.to_string());
    let (status, _, text) = send(client, request.body(Full::new(Bytes::from(body))).unwrap()).await;
    let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, json)
}

/// Asserts that the status reports an applied reload and returns its
/// generation.
pub fn ok_generation(status: &Value) -> u64 {
    assert_eq!(status["last"]["result"], "ok", "{status:#}");
    status["last"]["generation"].as_u64().unwrap()
}

pub fn path_of(p: &Path) -> String {
    p.display().to_string()
}
