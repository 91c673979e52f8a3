//! The agent binary over pipes, as the controller drives it over SSH.

use serverware_shared::agent::*;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

struct Agent {
    child: Child,
    stdin: ChildStdin,
    frames: mpsc::Receiver<AgentFrame>,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Agent {
    let mut child = Command::new(env!("CARGO_BIN_EXE_serverware-agent"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, frames) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let frame: AgentFrame =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad frame {line}: {e}"));
            if tx.send(frame).is_err() {
                break;
            }
        }
    });
    Agent {
        child,
        stdin,
        frames,
    }
}

impl Agent {
    fn send(&mut self, id: u64, request: AgentRequest) {
        let line = serde_json::to_string(&AgentRequestFrame { id, request }).unwrap();
        writeln!(self.stdin, "{line}").unwrap();
    }
    fn next(&self) -> AgentFrame {
        self.frames
            .recv_timeout(Duration::from_secs(30))
            .expect("a frame within 30 s")
    }
    fn response(&self, want: u64) -> AgentResponse {
        loop {
            if let AgentFrame::Response { id, response } = self.next() {
                assert_eq!(id, want);
                return response;
            }
        }
    }
    fn sample(&self) -> HostSample {
        loop {
            if let AgentFrame::Sample { sample } = self.next() {
                return sample;
            }
        }
    }
}

#[test]
fn hello_then_samples_of_this_host() {
    let mut a = start();
    a.send(
        1,
        AgentRequest::Hello {
            protocol: PROTOCOL_VERSION,
        },
    );
    match a.response(1) {
        AgentResponse::Hello {
            protocol,
            cpus,
            kernel,
            ..
        } => {
            assert_eq!(protocol, PROTOCOL_VERSION);
            assert!(cpus >= 1);
            assert!(!kernel.is_empty());
        }
        other => panic!("{other:?}"),
    }
    let s = a.sample();
    assert!(!s.cpus.is_empty());
    assert!(s.memory.total > 0 && s.memory.used <= s.memory.total);
    assert!(s.interfaces.iter().any(|i| i.name == "lo"));
    assert!(s
        .filesystems
        .iter()
        .any(|f| f.mount_point == "/" && f.size_bytes > 0));
    for c in &s.cpus {
        let sum = c.user + c.nice + c.system + c.iowait + c.irq + c.softirq + c.idle;
        assert!(sum == 0.0 || (sum - 100.0).abs() < 0.5, "{c:?}");
    }
    assert!(s.uptime_secs > 0);

    // A faster interval takes effect; a bad one is refused with a message.
    a.send(2, AgentRequest::SetInterval { millis: 200 });
    assert_eq!(a.response(2), AgentResponse::Ok);
    let t0 = Instant::now();
    for _ in 0..5 {
        a.sample();
    }
    assert!(
        t0.elapsed() < Duration::from_secs(4),
        "5 samples at 200 ms took {:?}",
        t0.elapsed()
    );
    a.send(3, AgentRequest::SetInterval { millis: 5 });
    assert!(matches!(a.response(3), AgentResponse::Error { .. }));
    a.send(4, AgentRequest::Ping);
    assert_eq!(a.response(4), AgentResponse::Pong);
    writeln!(a.stdin, "this is not json").unwrap();
    assert!(matches!(a.response(0), AgentResponse::Error { .. }));
    a.send(5, AgentRequest::Shutdown);
    assert_eq!(a.response(5), AgentResponse::Ok);
    let status = a.child.wait().unwrap();
    assert!(status.success());
}

#[test]
fn the_agent_exits_when_its_controller_goes_away() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_serverware-agent"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    writeln!(
        child.stdin.as_mut().unwrap(),
        r#"{{"id":1,"type":"hello","protocol":1}}"#
    )
    .unwrap();
    drop(child.stdin.take());
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(status) => assert!(status.unwrap().success()),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("the agent outlived its input");
        }
    }
}
