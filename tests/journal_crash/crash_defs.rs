//! The child's definitions thread (namespaces with quotas, filtered topic
//! subscriptions, unsubscribes) and the check that every reported definition is
//! there, exactly, after the reopen.

use super::*;

/// Where the definer's numbers start in a round (apart from the producers').
pub(super) const DEFS_AT: u64 = 3 * STRIDE;

/// The quotas of namespace `d{n}`.
pub(super) fn def_quotas(n: u64) -> Quotas {
    let q = Quotas::default().max_messages(n % 1000 + 1);
    if n % 2 == 0 {
        q.max_queues(n % 7 + 2)
    } else {
        q.max_bytes(n % 100_000 + 1)
    }
}

/// The filter of namespace `d{n}`'s subscription: each of the four kinds.
pub(super) fn def_filter(n: u64) -> Filter {
    match n % 4 {
        0 => Filter::All,
        1 => Filter::name(format!("n{n}")),
        2 => Filter::header("h", n.to_le_bytes().to_vec()),
        _ => Filter::execution_id(format!("e{n}")),
    }
}

/// The child's definer: namespaces, subscriptions, unsubscribes, each
/// reported once it returned.
pub(super) fn define_workload(b: &Broker, base: u64, deadline: Instant) {
    let mut i = 0;
    while Instant::now() < deadline {
        let n = base + DEFS_AT + i;
        let ns = b
            .create_namespace(&format!("d{n}"), def_quotas(n))
            .expect("child: create_namespace");
        emit(format_args!("D {n}"));
        let t = ns.topic("t").expect("child: topic");
        t.subscribe("s", def_filter(n)).expect("child: subscribe");
        emit(format_args!("U {n}"));
        if n % 3 == 0 {
            t.unsubscribe("s").expect("child: unsubscribe");
            emit(format_args!("V {n}"));
        }
        i += 1;
        thread::sleep(Duration::from_millis(1));
    }
}

/// The namespaces `d{n}` a reopened broker has, with their quotas and
/// subscriptions (those of this round, `n >= deliver_from`, checked to deliver
/// a matching message; earlier rounds' were checked in their round).
pub(super) fn found_definitions(
    b: &Broker,
    deliver_from: u64,
) -> Vec<(u64, Quotas, Option<Filter>)> {
    let mut out = Vec::new();
    for name in b.namespaces() {
        let Some(n) = name.strip_prefix('d').and_then(|n| n.parse().ok()) else {
            continue;
        };
        let ns = b.namespace(&name).unwrap();
        let t = ns.topic("t").unwrap();
        let filter = t.filter("s");
        if let Some(f) = filter.as_ref().filter(|_| n >= deliver_from) {
            let m = match f {
                Filter::Name(x) => Message::new("m").name(x.clone()),
                Filter::Header { key, value } => Message::new("m").header(key, value.clone()),
                _ => Message::new("m"),
            };
            assert_eq!(t.publish(m).unwrap(), 1, "{name}: a subscription delivers");
            ns.get_queue("s").unwrap().purge().unwrap();
        }
        out.push((n, ns.quotas().clone(), filter));
    }
    out
}

/// Every definition reported (this round or an earlier one) is there exactly;
/// one in flight at the kill is there whole or not at all.
pub(super) fn check_definitions(
    ctx: &str,
    base: u64,
    rep: &Reported,
    h: &mut History,
    found: &[(u64, Quotas, Option<Filter>)],
) {
    let found: std::collections::BTreeMap<u64, (&Quotas, &Option<Filter>)> =
        found.iter().map(|(n, q, f)| (*n, (q, f))).collect();
    // This round's, reported or in flight.
    let lo = base + DEFS_AT;
    let reported = rep
        .defined
        .iter()
        .filter(|n| (lo..lo + STRIDE).contains(*n));
    let next = lo + reported.count() as u64;
    for n in lo..=next {
        let sub = if rep.unsubscribed.contains(&n) {
            Some(false)
        } else if rep.subscribed.contains(&n) && n % 3 != 0 {
            Some(true)
        } else {
            None // in flight at the kill: either
        };
        match found.get(&n) {
            None => {
                assert!(
                    !rep.defined.contains(&n),
                    "{ctx}: namespace d{n} was created and is gone"
                );
                h.ns_in_flight.1 += 1;
            }
            Some((q, f)) => {
                assert_eq!(**q, def_quotas(n), "{ctx}: namespace d{n}'s quotas");
                if let Some(f) = f {
                    assert_eq!(*f, def_filter(n), "{ctx}: d{n}'s filter");
                }
                if let Some(want) = sub {
                    assert_eq!(f.is_some(), want, "{ctx}: d{n}'s subscription");
                }
                if n == next {
                    h.ns_in_flight.0 += 1;
                } else if sub.is_none() {
                    if f.is_some() {
                        h.sub_in_flight.0 += 1;
                    } else {
                        h.sub_in_flight.1 += 1;
                    }
                }
                h.defs.insert(n, f.is_some());
            }
        }
    }
    // Nothing else of this round, and every earlier round's still there.
    for (n, _) in found.range(lo..lo + STRIDE) {
        assert!(*n <= next, "{ctx}: namespace d{n} was never created");
    }
    for (n, sub) in h.defs.range(..lo) {
        let (q, f) = found
            .get(n)
            .unwrap_or_else(|| panic!("{ctx}: namespace d{n} of an earlier round is gone"));
        assert_eq!(**q, def_quotas(*n), "{ctx}: d{n}'s quotas changed");
        assert_eq!(f.is_some(), *sub, "{ctx}: d{n}'s subscription changed");
        if let Some(f) = f {
            assert_eq!(*f, def_filter(*n), "{ctx}: d{n}'s filter changed");
        }
    }
    h.defs_checked.0 += found.len();
    h.defs_checked.1 += found.values().filter(|(_, f)| f.is_some()).count();
}
