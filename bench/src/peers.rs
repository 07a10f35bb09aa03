//! Child processes of the references that are not shmem: `--child KIND NAME N`.

use crate::raw::{pthread_lock, pthread_unlock, Gate, RawMap};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;

/// Starts `procs` copies of this binary as `--child kind name n`.
pub fn start(kind: &str, name: &str, n: u64, procs: usize) -> Vec<Child> {
    let exe = std::env::current_exe().unwrap();
    (0..procs).map(|_| Command::new(&exe).args(["--child", kind, name, &n.to_string()]).spawn().unwrap()).collect()
}

/// Starts one child whose stdout we read (it prints `ready` once set up).
pub fn start_piped(kind: &str, name: &str, n: u64) -> Child {
    let exe = std::env::current_exe().unwrap();
    let mut child =
        Command::new(&exe).args(["--child", kind, name, &n.to_string()]).stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.as_mut().unwrap()), &mut line).unwrap();
    assert_eq!(line.trim(), "ready", "{kind} child did not start");
    child
}

pub fn join(children: Vec<Child>) {
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
}

pub fn child_main(args: &[String]) {
    let (kind, name, n) = (args[0].as_str(), args[1].as_str(), args[2].parse::<u64>().unwrap());
    match kind {
        "floor" => {
            let map = RawMap::open(name, 4096, false);
            Gate::arrive();
            for _ in 0..n {
                map.atomic().fetch_add(1, Ordering::SeqCst);
            }
        }
        "pthread" => {
            let map = RawMap::open(name, 64 + 8 * 1024, false);
            Gate::arrive();
            for _ in 0..n {
                pthread_lock(&map);
                // SAFETY: the mutex is held.
                unsafe { (*map.values()).iter_mut().for_each(|v| *v += 1) };
                pthread_unlock(&map);
            }
        }
        "raw_sync" => {
            let map = RawMap::open(name, 64 + 8 * 1024, false);
            // SAFETY: the parent initialised a raw_sync mutex at the start of
            // the mapping, guarding the array after it.
            let (lock, _) = unsafe {
                <raw_sync::locks::Mutex as raw_sync::locks::LockInit>::from_existing(map.ptr, map.values().cast())
            }
            .unwrap();
            Gate::arrive();
            for _ in 0..n {
                let guard = lock.lock().unwrap();
                // SAFETY: the lock is held; the data pointer is the array.
                unsafe { (*(*guard).cast::<[i64; 1024]>()).iter_mut().for_each(|v| *v += 1) };
            }
        }
        "ipc_producer" => {
            Gate::arrive();
            let tx = ipc_channel::ipc::IpcSender::<u64>::connect(name.to_owned()).unwrap();
            for i in 0..n {
                tx.send(i).unwrap();
            }
        }
        "ipc_pong" => {
            let (ping_tx, ping_rx) = ipc_channel::ipc::channel::<u64>().unwrap();
            let (pong_tx, pong_rx) = ipc_channel::ipc::channel::<u64>().unwrap();
            let boot = ipc_channel::ipc::IpcSender::connect(name.to_owned()).unwrap();
            boot.send((ping_tx, pong_rx)).unwrap();
            while let Ok(v) = ping_rx.recv() {
                pong_tx.send(v).unwrap();
            }
        }
        "iceoryx_producer" => {
            let node = ice::node();
            let port = ice::service(&node, name, ice::QUEUE_BUFFER);
            let publisher = ice::publisher(&port);
            Gate::arrive();
            for i in 0..n {
                assert_eq!(publisher.send_copy(i).unwrap(), 1, "one subscriber");
            }
        }
        "iceoryx_pong" => {
            let node = ice::node();
            let ping = ice::service(&node, &format!("{name}/ping"), ice::PING_BUFFER);
            let pong = ice::service(&node, &format!("{name}/pong"), ice::PING_BUFFER);
            let sub = ping.subscriber_builder().create().unwrap();
            let publisher = ice::publisher(&pong);
            println!("ready");
            loop {
                let Some(sample) = sub.receive().unwrap() else {
                    std::hint::spin_loop();
                    continue;
                };
                let v = *sample.payload();
                drop(sample);
                if v == u64::MAX {
                    return;
                }
                assert_eq!(publisher.send_copy(v).unwrap(), 1);
            }
        }
        "pipe_pong" => {
            // Echo 8-byte messages from stdin to stdout: a plain pipe.
            let mut buf = [0u8; 8];
            loop {
                // SAFETY: fds 0 and 1 are the pipes the parent set up; `buf` is ours.
                let got = unsafe { libc::read(0, buf.as_mut_ptr().cast(), 8) };
                if got != 8 {
                    return;
                }
                // SAFETY: as above.
                assert_eq!(unsafe { libc::write(1, buf.as_ptr().cast(), 8) }, 8);
            }
        }
        "noop" => {}
        _ => panic!("unknown child {kind}"),
    }
}

/// iceoryx2 publish-subscribe configured as a lossless queue: no overflow,
/// the publisher retries until the subscriber has room.
pub mod ice {
    use iceoryx2::port::publisher::Publisher;
    use iceoryx2::prelude::*;
    use iceoryx2::service::port_factory::publish_subscribe::PortFactory;

    pub const QUEUE_BUFFER: usize = 4096;
    pub const PING_BUFFER: usize = 16;

    pub type Port = PortFactory<ipc::Service, u64, ()>;

    pub fn node() -> Node<ipc::Service> {
        set_log_level(LogLevel::Error);
        NodeBuilder::new().create::<ipc::Service>().unwrap()
    }

    pub fn service(node: &Node<ipc::Service>, name: &str, buffer: usize) -> Port {
        node.service_builder(&name.try_into().unwrap())
            .publish_subscribe::<u64>()
            .enable_safe_overflow(false)
            .subscriber_max_buffer_size(buffer)
            .subscriber_max_borrowed_samples(2)
            .open_or_create()
            .unwrap()
    }

    pub fn publisher(port: &Port) -> Publisher<ipc::Service, u64, ()> {
        port.publisher_builder()
            .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
            .max_loaned_samples(2)
            .create()
            .unwrap()
    }
}
