//! Helpers of the crate's unit tests: what a connection's outbound queue was sent.

use tokio::sync::mpsc::Receiver;
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// Every frame queued so far, as JSON values.
pub fn frames(rx: &mut Receiver<Utf8Bytes>) -> Vec<serde_json::Value> {
    std::iter::from_fn(|| rx.try_recv().ok())
        .map(|f| serde_json::from_str(f.as_str()).unwrap_or_default())
        .collect()
}

/// The types of the frames queued so far; a reply is `reply:<code>`.
pub fn kinds(rx: &mut Receiver<Utf8Bytes>) -> Vec<String> {
    frames(rx)
        .iter()
        .map(|f| match f["type"].as_str().unwrap_or_default() {
            "reply" => format!("reply:{}", f["code"]),
            t => t.to_string(),
        })
        .collect()
}
