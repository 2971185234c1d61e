//! A raw HTTP/2 (prior knowledge, no TLS) client for what the SDK clients never send: a request
//! whose body ends with trailers instead of a last DATA frame.

use anyhow::{Context, Result};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request};

/// What came back.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// POSTs `body` to `http://127.0.0.1:<port><path>` with `headers`; with `trailers`, the body's
/// last DATA frame does not end the stream and the trailers do.
pub async fn post(
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    trailers: Option<&[(&str, &str)]>,
) -> Result<Answer> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let (client, connection) = h2::client::handshake(tcp).await.context("HTTP/2 handshake")?;
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut client = client.ready().await?;
    let mut request = Request::post(format!("http://127.0.0.1:{port}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let (response, mut send) = client.send_request(request.body(())?, false)?;
    let mut map = HeaderMap::new();
    for (name, value) in trailers.unwrap_or_default() {
        map.insert(HeaderName::from_bytes(name.as_bytes())?, HeaderValue::from_str(value)?);
    }
    // A proxy that answers at the headers may close the stream before the body is sent: the
    // answer still comes, so a failed send is not an error here.
    if send.send_data(Bytes::copy_from_slice(body), trailers.is_none()).is_ok() && trailers.is_some() {
        let _ = send.send_trailers(map);
    }
    let response = response.await.context("HTTP/2 response")?;
    let (parts, mut received) = response.into_parts();
    let mut out = Vec::new();
    while let Some(chunk) = received.data().await {
        let chunk = chunk?;
        out.extend_from_slice(&chunk);
        let _ = received.flow_control().release_capacity(chunk.len());
    }
    driver.abort();
    Ok(Answer { status: parts.status.as_u16(), headers: parts.headers, body: out })
}
