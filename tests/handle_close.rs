//! Closing a handle while another thread waits in it, and settling after the
//! broker closed: no false OK, no waiter left asleep, nothing acknowledged lost.

use libqueue::ffi::*;
use libqueue::store::Record;
use libqueue::*;
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

fn persistent_broker(dir: &std::path::Path) -> Broker {
    Broker::open(
        BrokerOptions::new()
            .data_dir(dir)
            .sync_mode(SyncMode::Always),
    )
    .unwrap()
}

#[test]
fn an_ack_after_the_broker_closed_is_closed_and_the_message_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    {
        let b = persistent_broker(dir.path());
        let q = b.queue("jobs").unwrap();
        q.send(Message::new("a").persistent(true)).unwrap();
        q.send(Message::new("b").persistent(true)).unwrap();
        q.send(Message::new("c").persistent(true)).unwrap();
        let d1 = q.try_receive().unwrap().unwrap();
        let d2 = q.try_receive().unwrap().unwrap();
        let d3 = q.try_receive().unwrap().unwrap();
        b.close();
        assert!(matches!(d1.ack(), Err(Error::Closed)));
        assert!(matches!(d2.nack(), Err(Error::Closed)));
        assert!(matches!(d3.extend(), Err(Error::Closed)));
    }
    let b = persistent_broker(dir.path());
    let q = b.queue("jobs").unwrap();
    let mut bodies = Vec::new();
    while let Some(d) = q.try_receive().unwrap() {
        bodies.push(d.body().to_vec());
        d.ack().unwrap();
    }
    bodies.sort();
    assert_eq!(bodies, [b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
}

#[test]
fn a_c_ack_after_the_broker_closed_is_lq_closed_and_the_body_unreadable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap();
    // SAFETY: every pointer below is a live handle from this library or a local.
    unsafe {
        let mut o = ptr::null_mut();
        assert_eq!(lq_broker_options_new(&mut o), lq_status::LQ_OK);
        assert_eq!(
            lq_broker_options_set_data_dir(o, path.as_ptr(), path.len()),
            lq_status::LQ_OK
        );
        let mut b = ptr::null_mut();
        assert_eq!(lq_broker_open(o, &mut b), lq_status::LQ_OK);
        lq_broker_options_free(o);
        let mut q = ptr::null_mut();
        assert_eq!(
            lq_broker_queue(b, b"jobs".as_ptr(), 4, &mut q),
            lq_status::LQ_OK
        );
        let mut m = ptr::null_mut();
        assert_eq!(lq_message_new(b"x".as_ptr(), 1, &mut m), lq_status::LQ_OK);
        assert_eq!(lq_message_set_persistent(m, true), lq_status::LQ_OK);
        assert_eq!(lq_queue_send(q, m, ptr::null_mut()), lq_status::LQ_OK);
        let mut d = ptr::null_mut();
        assert_eq!(lq_queue_try_receive(q, &mut d), lq_status::LQ_OK);
        assert_eq!(lq_broker_close(b), lq_status::LQ_OK);
        let (mut p, mut n) = (ptr::null(), 0usize);
        assert_eq!(lq_delivery_body(d, &mut p, &mut n), lq_status::LQ_CLOSED);
        assert_eq!(lq_delivery_ack(d), lq_status::LQ_CLOSED);
        assert_eq!(lq_delivery_nack(d), lq_status::LQ_CLOSED);
        let mut id = u64::MAX;
        assert_eq!(lq_delivery_id(d, &mut id), lq_status::LQ_OK);
        lq_delivery_free(d);
        lq_queue_free(q);
        lq_broker_free(b);
    }
    let b = Broker::open(BrokerOptions::new().data_dir(dir.path())).unwrap();
    let d = b.queue("jobs").unwrap().try_receive().unwrap().unwrap();
    assert_eq!(d.body(), b"x");
}

/// A journal stand-in that refuses `Removed` records once told to.
struct FailingRemovals {
    fail: AtomicBool,
}

impl Storage for FailingRemovals {
    fn name(&self) -> &'static str {
        "failing"
    }
    fn append(&self, record: &Record<'_>) -> Result<()> {
        if self.fail.load(SeqCst) && matches!(record, Record::Removed { .. }) {
            return Err(Error::Storage("the disk is full".into()));
        }
        Ok(())
    }
    fn flush(&self) -> Result<()> {
        Ok(())
    }
}

#[test]
fn an_ack_the_journal_could_not_record_is_an_error() {
    let storage = Arc::new(FailingRemovals {
        fail: AtomicBool::new(false),
    });
    let b = Broker::open(BrokerOptions::new().storage(storage.clone())).unwrap();
    let q = b.queue("jobs").unwrap();
    q.send(Message::new("a").persistent(true)).unwrap();
    q.send(Message::new("b").persistent(true)).unwrap();
    let ok = q.try_receive().unwrap().unwrap();
    ok.ack().unwrap();
    storage.fail.store(true, SeqCst);
    let d = q.try_receive().unwrap().unwrap();
    assert!(matches!(d.ack(), Err(Error::Storage(_))));
}

#[test]
fn closing_an_rpc_client_wakes_its_call() {
    let b = Broker::new();
    let ns = b.namespace("svc").unwrap();
    let rpc = Arc::new(RpcClient::new(&ns).unwrap());
    ns.queue("nobody-serves").unwrap();
    let r = rpc.clone();
    let started = Instant::now();
    let caller = thread::spawn(move || {
        r.call("nobody-serves", Message::new("x"), Duration::from_secs(30))
            .map(|_| ())
    });
    thread::sleep(Duration::from_millis(50));
    rpc.close();
    assert!(matches!(caller.join().unwrap(), Err(Error::Closed)));
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(matches!(
        rpc.cast("nobody-serves", Message::new("y")),
        Err(Error::Closed)
    ));
}

#[test]
fn lq_topic_close_wakes_a_publish_waiting_for_room() {
    /// A raw topic handle shared with another thread (the C ABI allows it).
    struct SharedTopic(*mut lq_topic);
    // SAFETY: an lq_topic may be used from several threads at once (c-api.md).
    unsafe impl Send for SharedTopic {}
    // SAFETY: the handles are live until freed at the end, after the thread
    // that uses them has been joined.
    unsafe {
        let mut o = ptr::null_mut();
        assert_eq!(lq_broker_options_new(&mut o), lq_status::LQ_OK);
        let mut cb = ptr::null_mut();
        assert_eq!(lq_broker_open(o, &mut cb), lq_status::LQ_OK);
        lq_broker_options_free(o);
        let mut cns = ptr::null_mut();
        assert_eq!(
            lq_broker_namespace(cb, b"t".as_ptr(), 1, &mut cns),
            lq_status::LQ_OK
        );
        let mut cfull = ptr::null_mut();
        let mut qo = ptr::null_mut();
        assert_eq!(lq_queue_options_new(&mut qo), lq_status::LQ_OK);
        assert_eq!(lq_queue_options_set_max_messages(qo, 1), lq_status::LQ_OK);
        assert_eq!(
            lq_namespace_create_queue(cns, b"sub".as_ptr(), 3, qo, &mut cfull),
            lq_status::LQ_OK
        );
        lq_queue_options_free(qo);
        assert_eq!(
            lq_queue_send_bytes(cfull, b"x".as_ptr(), 1, ptr::null_mut()),
            lq_status::LQ_OK
        );
        let mut topic = ptr::null_mut();
        assert_eq!(
            lq_namespace_topic(cns, b"news".as_ptr(), 4, &mut topic),
            lq_status::LQ_OK
        );
        assert_eq!(
            lq_topic_subscribe(topic, b"sub".as_ptr(), 3, ptr::null_mut()),
            lq_status::LQ_OK
        );
        let t = SharedTopic(topic);
        let publisher = thread::spawn(move || {
            let t = t;
            let mut m = ptr::null_mut();
            lq_message_new(b"news".as_ptr(), 4, &mut m);
            lq_topic_publish(t.0, m, ptr::null_mut())
        });
        thread::sleep(Duration::from_millis(50));
        assert_eq!(lq_topic_close(topic), lq_status::LQ_OK);
        assert_eq!(publisher.join().unwrap(), lq_status::LQ_CLOSED);
        let mut m = ptr::null_mut();
        lq_message_new(b"late".as_ptr(), 4, &mut m);
        assert_eq!(
            lq_topic_publish(topic, m, ptr::null_mut()),
            lq_status::LQ_CLOSED
        );
        lq_topic_free(topic);
        lq_queue_free(cfull);
        lq_namespace_free(cns);
        lq_broker_free(cb);
    }
}

/// A raw queue handle shared with other threads (the C ABI allows it).
#[derive(Clone, Copy)]
struct Shared(*mut lq_queue);
// SAFETY: an lq_queue may be used from several threads at once (c-api.md).
unsafe impl Send for Shared {}

#[test]
fn lq_queue_close_wakes_every_blocking_call_on_the_handle() {
    // SAFETY: the handles are live until freed at the end, after every thread
    // that uses them has been joined.
    unsafe {
        let mut o = ptr::null_mut();
        assert_eq!(lq_broker_options_new(&mut o), lq_status::LQ_OK);
        let mut b = ptr::null_mut();
        assert_eq!(lq_broker_open(o, &mut b), lq_status::LQ_OK);
        lq_broker_options_free(o);
        let mut qo = ptr::null_mut();
        assert_eq!(lq_queue_options_new(&mut qo), lq_status::LQ_OK);
        assert_eq!(lq_queue_options_set_max_messages(qo, 1), lq_status::LQ_OK);
        assert_eq!(lq_queue_options_set_on_full(qo, 0, 0), lq_status::LQ_OK);
        let mut ns = ptr::null_mut();
        assert_eq!(
            lq_broker_namespace(b, b"t".as_ptr(), 1, &mut ns),
            lq_status::LQ_OK
        );
        for round in 0..20 {
            let name = format!("full{round}");
            let mut full = ptr::null_mut();
            assert_eq!(
                lq_namespace_create_queue(ns, name.as_ptr(), name.len(), qo, &mut full),
                lq_status::LQ_OK
            );
            assert_eq!(
                lq_queue_send_bytes(full, b"x".as_ptr(), 1, ptr::null_mut()),
                lq_status::LQ_OK
            );
            let mut empty = ptr::null_mut();
            let ename = format!("empty{round}");
            assert_eq!(
                lq_namespace_queue(ns, ename.as_ptr(), ename.len(), &mut empty),
                lq_status::LQ_OK
            );
            let (f, e) = (Shared(full), Shared(empty));
            let mut waiters = Vec::new();
            waiters.push(thread::spawn(move || {
                let mut d = ptr::null_mut();
                lq_queue_receive_timeout({ e }.0, 30_000, &mut d)
            }));
            waiters.push(thread::spawn(move || {
                let mut d = ptr::null_mut();
                lq_queue_receive({ e }.0, &mut d)
            }));
            waiters.push(thread::spawn(move || {
                let mut out = [ptr::null_mut(); 4];
                let mut n = 0;
                lq_queue_receive_batch({ e }.0, 4, LQ_WAIT_FOREVER, out.as_mut_ptr(), &mut n)
            }));
            waiters.push(thread::spawn(move || {
                lq_queue_send_bytes({ f }.0, b"y".as_ptr(), 1, ptr::null_mut())
            }));
            waiters.push(thread::spawn(move || {
                lq_queue_send_with(
                    { f }.0,
                    {
                        let mut m = ptr::null_mut();
                        lq_message_new(b"z".as_ptr(), 1, &mut m);
                        m
                    },
                    2,
                    30_000,
                    ptr::null_mut(),
                )
            }));
            waiters.push(thread::spawn(move || {
                let mut m = ptr::null_mut();
                lq_message_new(b"b".as_ptr(), 1, &mut m);
                let batch = [m];
                lq_queue_send_batch({ f }.0, batch.as_ptr(), 1, ptr::null_mut())
            }));
            waiters.push(thread::spawn(move || {
                let mut m = ptr::null_mut();
                lq_message_new(b"b".as_ptr(), 1, &mut m);
                let batch = [m];
                lq_queue_send_batch_with({ f }.0, batch.as_ptr(), 1, 2, 30_000, ptr::null_mut())
            }));
            if round == 0 {
                // The explicit policy applies to the whole batch: reject → LQ_FULL.
                let mut m = ptr::null_mut();
                lq_message_new(b"r".as_ptr(), 1, &mut m);
                let batch = [m];
                assert_eq!(
                    lq_queue_send_batch_with(full, batch.as_ptr(), 1, 1, 0, ptr::null_mut()),
                    lq_status::LQ_FULL
                );
            }
            // Some rounds close before the waiters sleep, some after.
            thread::sleep(Duration::from_millis(round % 4 * 5));
            let started = Instant::now();
            assert_eq!(lq_queue_close(full), lq_status::LQ_OK);
            assert_eq!(lq_queue_close(empty), lq_status::LQ_OK);
            assert_eq!(lq_queue_close(empty), lq_status::LQ_OK); // idempotent
            for w in waiters {
                assert_eq!(w.join().unwrap(), lq_status::LQ_CLOSED);
            }
            assert!(started.elapsed() < Duration::from_secs(10));
            let mut closed = false;
            assert_eq!(lq_queue_is_closed(empty, &mut closed), lq_status::LQ_OK);
            assert!(closed);
            let mut d = ptr::null_mut();
            assert_eq!(lq_queue_try_receive(empty, &mut d), lq_status::LQ_CLOSED);
            // The queue itself goes on through another handle.
            let mut again = ptr::null_mut();
            assert_eq!(
                lq_namespace_get_queue(ns, name.as_ptr(), name.len(), &mut again),
                lq_status::LQ_OK
            );
            assert_eq!(lq_queue_try_receive(again, &mut d), lq_status::LQ_OK);
            assert_eq!(lq_delivery_ack(d), lq_status::LQ_OK);
            lq_delivery_free(d);
            lq_queue_free(again);
            lq_queue_free(full);
            lq_queue_free(empty);
        }
        lq_queue_options_free(qo);
        lq_namespace_free(ns);
        lq_broker_free(b);
    }
}
