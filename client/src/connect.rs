//! Opening the WebSocket: TCP, TLS for `wss://` (trusting
//! [`ClientOptions::ca_cert`]), the handshake.

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::ClientOptions;

/// The stream under the WebSocket: plain TCP or TLS over TCP.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Host and port of a `ws://` / `wss://` URL.
fn host_port(url: &str) -> Result<(bool, String, u16), String> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("ws://") {
        (false, r)
    } else if let Some(r) = url.strip_prefix("wss://") {
        (true, r)
    } else {
        return Err(format!("{url:?} is not a ws:// or wss:// URL"));
    };
    let authority = rest.split('/').next().unwrap_or("");
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
            h.trim_start_matches('[').trim_end_matches(']').to_string(),
            p.parse::<u16>()
                .map_err(|_| format!("bad port in {url:?}"))?,
        ),
        _ => (authority.to_string(), if tls { 443 } else { 80 }),
    };
    if host.is_empty() {
        return Err(format!("no host in {url:?}"));
    }
    Ok((tls, host, port))
}

/// Opens the WebSocket of `opts.url`: TCP (no Nagle), TLS for `wss://`,
/// then the handshake with the buffer and size limits of the hub's sessions.
pub(crate) async fn connect(
    opts: &ClientOptions,
) -> Result<tokio_tungstenite::WebSocketStream<Box<dyn Io>>, String> {
    let (tls, host, port) = host_port(&opts.url)?;
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| format!("connect {host}:{port}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let stream: Box<dyn Io> = if tls {
        let Some(ca) = &opts.ca_cert else {
            return Err("wss:// needs a CA certificate to trust (ca_cert)".into());
        };
        let cfg = crate::tls::client_config_with(ca, opts.client_cert.as_deref())
            .map_err(|e| format!("TLS: {e}"))?;
        let name = rustls_pki_types::ServerName::try_from(host.clone())
            .map_err(|e| format!("server name {host:?}: {e}"))?;
        let s = tokio_rustls::TlsConnector::from(cfg)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS with {host}:{port}: {e}"))?;
        Box::new(s)
    } else {
        Box::new(tcp)
    };
    let cfg = WebSocketConfig::default()
        .read_buffer_size(crate::WS_READ_BUFFER_BYTES)
        .max_message_size(Some(outpost::sync::frame::MAX_FRAME_BYTES + 1024))
        .max_frame_size(Some(outpost::sync::frame::MAX_FRAME_BYTES + 1024));
    let (ws, _) = tokio_tungstenite::client_async_with_config(opts.url.as_str(), stream, Some(cfg))
        .await
        .map_err(|e| format!("WebSocket handshake with {}: {e}", opts.url))?;
    Ok(ws)
}

#[cfg(test)]
mod tests {
    use super::host_port;

    #[test]
    fn urls() {
        assert_eq!(
            host_port("ws://127.0.0.1:4000/sync").unwrap(),
            (false, "127.0.0.1".into(), 4000)
        );
        assert_eq!(
            host_port("wss://hub.example/sync").unwrap(),
            (true, "hub.example".into(), 443)
        );
        assert!(host_port("http://x").is_err());
        assert!(host_port("ws://:80/").is_err());
    }
}
