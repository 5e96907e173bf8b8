//! WebSocket through the HTTPS listener (HTTP/1.1 upgrade, ALPN `http/1.1`): an echo through
//! `/ws/` with the prefix stripped, MQTT over WebSocket through `/mqtt` to a real mosquitto
//! broker, and an upgraded connection that outlives a certificate rotation.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Proxy, fingerprint, free_port, local, tls_stream, wait_for_served};
use futures::{SinkExt, StreamExt};
use testkit::pki::Pki;
use tokio_tungstenite::tungstenite::Message;

fn config(
    port: u16,
    dir: &std::path::Path,
    echo: std::net::SocketAddr,
    broker_ws: std::net::SocketAddr,
) -> String {
    format!(
        r#"
[reload]
interval = "1h"
[[listeners]]
name = "https"
listen = "127.0.0.1:{port}"
[listeners.tls]
cert = "{dir}/chain.pem"
key = "{dir}/key.pem"
[[listeners.routes]]
path_prefix = "/ws/"
strip_prefix = true
upstream = "http-adapter"
[[listeners.routes]]
path_prefix = "/mqtt"
upstream = "mqtt-adapter-ws"

[[upstreams]]
name = "http-adapter"
address = "{echo}"
read_timeout = "1s"
[[upstreams]]
name = "mqtt-adapter-ws"
address = "{broker_ws}"
"#,
        dir = dir.display(),
    )
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

async fn connect_ws(port: u16, ca: &str, path: &str) -> Ws {
    // WebSocket needs HTTP/1.1: the client offers only http/1.1 by ALPN.
    let tls = tls_stream(local(port), ca, &[b"http/1.1"]).await;
    let url = format!("wss://localhost:{port}{path}");
    let (ws, resp) = tokio_tungstenite::client_async(url, tls)
        .await
        .expect("WebSocket upgrade through the proxy");
    assert_eq!(resp.status(), 101);
    ws
}

async fn next_text(ws: &mut Ws) -> String {
    match tokio::time::timeout(common::DEADLINE, ws.next()).await {
        Ok(Some(Ok(Message::Text(t)))) => t.to_string(),
        other => panic!("expected a text message, got {other:?}"),
    }
}

/// `/ws/...` reaches the upstream with the prefix stripped, and messages echo both ways. The
/// upstream's 1 s read timeout does not cut the upgraded connection.
#[tokio::test(flavor = "multi_thread")]
async fn websocket_echo_through_ws_prefix_with_prefix_stripped() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::localhost();
    pki.write(dir.path(), "");
    let echo = testkit::ws_echo::start().await;
    let port = free_port();
    let _proxy = Proxy::start(
        dir.path(),
        &config(port, dir.path(), echo.addr, echo.addr),
        &[local(port)],
    );
    let mut ws = connect_ws(port, &pki.ca_pem, "/ws/channels/c1/messages?x=1").await;
    assert_eq!(next_text(&mut ws).await, "path: /channels/c1/messages?x=1");
    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "hello");
    // Longer than the upstream read_timeout: an upgraded connection is not a request in flight.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    ws.send(Message::text("still here")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "still here");
}

/// An open WebSocket keeps working across a certificate rotation.
#[tokio::test(flavor = "multi_thread")]
async fn upgraded_connection_survives_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::localhost();
    let files = pki.write(dir.path(), "");
    let echo = testkit::ws_echo::start().await;
    let port = free_port();
    let proxy = Proxy::start(
        dir.path(),
        &config(port, dir.path(), echo.addr, echo.addr),
        &[local(port)],
    );
    proxy.wait_for_log("certificate reloader running");
    let mut ws = connect_ws(port, &pki.ca_pem, "/ws/x").await;
    assert_eq!(next_text(&mut ws).await, "path: /x");
    let leaf = pki.leaf("localhost", &["localhost", "127.0.0.1"]);
    common::rotate_pair(&files.cert, &files.key, &leaf);
    wait_for_served(
        local(port),
        &pki.ca_pem,
        &fingerprint(&leaf.der),
        Duration::from_secs(2),
    )
    .await;
    ws.send(Message::text("after rotation")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "after rotation");
}

/// MQTT over WebSocket (a real client, rumqttc) through `/mqtt` to mosquitto's WebSocket
/// listener: subscribe, publish, receive.
#[tokio::test(flavor = "multi_thread")]
async fn mqtt_over_websocket_through_mqtt_route() {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::localhost();
    pki.write(dir.path(), "");
    let broker = testkit::mqtt_broker::start();
    let echo = testkit::ws_echo::start().await;
    let port = free_port();
    let _proxy = Proxy::start(
        dir.path(),
        &config(port, dir.path(), echo.addr, broker.websocket),
        &[local(port)],
    );
    let tls = common::client_config(&pki.ca_pem, &[b"http/1.1"]);
    let mut options =
        MqttOptions::new("edge-ws-test", format!("wss://localhost:{port}/mqtt"), port);
    options.set_transport(Transport::wss_with_config(TlsConfiguration::Rustls(
        Arc::clone(&tls),
    )));
    options.set_keep_alive(Duration::from_secs(30));
    let (client, mut events) = AsyncClient::new(options, 10);
    client.subscribe("edge/ws", QoS::AtLeastOnce).await.unwrap();
    let received = tokio::time::timeout(common::DEADLINE, async {
        loop {
            match events
                .poll()
                .await
                .expect("MQTT over WebSocket through the proxy")
            {
                Event::Incoming(Packet::SubAck(_)) => {
                    client
                        .publish(
                            "edge/ws",
                            QoS::AtLeastOnce,
                            false,
                            b"over websocket".to_vec(),
                        )
                        .await
                        .unwrap();
                }
                Event::Incoming(Packet::Publish(p)) => return p.payload,
                _ => {}
            }
        }
    })
    .await
    .expect("no message came back");
    assert_eq!(&received[..], b"over websocket");
}
