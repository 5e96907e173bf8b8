//! A real mosquitto broker on loopback (Debian packages `mosquitto`), with a plain MQTT
//! listener and a WebSocket listener, stopped when dropped.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running broker.
pub struct Broker {
    /// Plain MQTT (TCP) address.
    pub mqtt: SocketAddr,
    /// MQTT over WebSocket address (any path).
    pub websocket: SocketAddr,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
}

/// Starts mosquitto and waits until both listeners accept connections.
pub fn start() -> Broker {
    let dir = tempfile::tempdir().expect("broker dir");
    let (mqtt, websocket) = (free_addr(), free_addr());
    let config = format!(
        "per_listener_settings false\nallow_anonymous true\npersistence false\nlog_dest stderr\n\
         listener {} 127.0.0.1\nlistener {} 127.0.0.1\nprotocol websockets\n",
        mqtt.port(),
        websocket.port()
    );
    let path = dir.path().join("mosquitto.conf");
    std::fs::write(&path, config).expect("write mosquitto.conf");
    // Debian installs the broker in /usr/sbin, which is not on every user's PATH.
    let program = if std::path::Path::new("/usr/sbin/mosquitto").exists() {
        "/usr/sbin/mosquitto"
    } else {
        "mosquitto"
    };
    let child = Command::new(program)
        .arg("-c")
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run mosquitto (install it: apt-get install mosquitto)");
    let broker = Broker {
        mqtt,
        websocket,
        child,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    for addr in [mqtt, websocket] {
        while TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "mosquitto did not listen on {addr}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    broker
}
