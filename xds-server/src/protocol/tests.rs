//! The protocol state machines driven without gRPC.

use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use envoy_types::pb::google::rpc::Status;

use super::delta::Delta;
use super::sotw::Sotw;
use super::Event;
use crate::resources::{self, CLUSTER, EXTENSION, ROUTE};
use crate::snapshot::Snapshot;
use crate::validate::load_str;

fn snap(yaml: &str) -> Snapshot {
    let gw = load_str(yaml).unwrap_or_else(|e| panic!("{e:?}"));
    Snapshot::new(
        resources::build(&gw, std::path::Path::new("/wasm"), false)
            .unwrap_or_else(|e| panic!("{e}")),
    )
}

const ONE: &str =
    "providers:\n- {name: pa1, kind: openai_compatible, base_url: 'http://127.0.0.1:1'}\n";
const TWO: &str = "providers:\n- {name: pa1, kind: openai_compatible, base_url: 'http://127.0.0.1:1'}\n- {name: pb1, kind: openai_compatible, base_url: 'http://127.0.0.1:2'}\n";
const THREE: &str = "providers:\n- {name: pa1, kind: openai_compatible, base_url: 'http://127.0.0.1:9'}\n- {name: pb1, kind: openai_compatible, base_url: 'http://127.0.0.1:2'}\n";

fn req(type_url: &str, version: &str, nonce: &str, names: &[&str]) -> DiscoveryRequest {
    DiscoveryRequest {
        type_url: type_url.into(),
        version_info: version.into(),
        response_nonce: nonce.into(),
        resource_names: names.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn nack(mut r: DiscoveryRequest) -> DiscoveryRequest {
    r.error_detail = Some(Status {
        code: 3,
        message: "bad cluster".into(),
        ..Default::default()
    });
    r
}

#[test]
fn sotw_first_request_gets_everything_and_ack_gets_nothing() {
    let s = snap(TWO);
    let mut st = Sotw::default();
    let (out, ev) = st.on_request(&req(CLUSTER, "", "", &[]), &s);
    assert_eq!(ev, None);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].resources.len(), 2);
    let (v, n) = (out[0].version_info.clone(), out[0].nonce.clone());
    let (out, ev) = st.on_request(&req(CLUSTER, &v, &n, &[]), &s);
    assert!(
        out.is_empty(),
        "an ACK of the current version needs no response"
    );
    assert_eq!(
        ev,
        Some(Event::Ack {
            type_url: CLUSTER.into(),
            version: v
        })
    );
}

#[test]
fn sotw_new_snapshot_goes_to_a_waiting_client_and_unchanged_types_stay_quiet() {
    let (s1, s2) = (snap(ONE), snap(TWO));
    let mut st = Sotw::default();
    let (out, _) = st.on_request(&req(CLUSTER, "", "", &[]), &s1);
    let (out2, _) = st.on_request(&req(ROUTE, "", "", &["gateway"]), &s1);
    st.on_request(&req(CLUSTER, &out[0].version_info, &out[0].nonce, &[]), &s1);
    st.on_request(
        &req(ROUTE, &out2[0].version_info, &out2[0].nonce, &["gateway"]),
        &s1,
    );
    let out = st.on_snapshot(&s2);
    // Adding a provider adds a cluster; routes are unchanged (no models), so only CDS is sent.
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].type_url, CLUSTER);
    assert_eq!(out[0].resources.len(), 2);
}

#[test]
fn sotw_update_during_ack_waits_for_the_ack_then_sends_the_newest() {
    let (s1, s2, s3) = (snap(ONE), snap(TWO), snap(THREE));
    let mut st = Sotw::default();
    let (out, _) = st.on_request(&req(CLUSTER, "", "", &[]), &s1);
    // Two updates land while the first response is unacknowledged: nothing may be sent yet.
    assert!(st.on_snapshot(&s2).is_empty());
    assert!(st.on_snapshot(&s3).is_empty());
    let (out, ev) = st.on_request(&req(CLUSTER, &out[0].version_info, &out[0].nonce, &[]), &s3);
    assert!(matches!(ev, Some(Event::Ack { .. })));
    assert_eq!(
        out.len(),
        1,
        "the ACK is the client's next request: answer it with the newest"
    );
    assert_eq!(out[0].version_info, s3.type_version(CLUSTER, None));
}

#[test]
fn sotw_nack_is_reported_and_the_rejected_version_not_resent() {
    let (s1, s2, s3) = (snap(ONE), snap(TWO), snap(THREE));
    let mut st = Sotw::default();
    let (out, _) = st.on_request(&req(CLUSTER, "", "", &[]), &s1);
    st.on_request(&req(CLUSTER, &out[0].version_info, &out[0].nonce, &[]), &s1);
    let out = st.on_snapshot(&s2);
    let v1 = s1.type_version(CLUSTER, None);
    let (again, ev) = st.on_request(&nack(req(CLUSTER, &v1, &out[0].nonce, &[])), &s2);
    assert_eq!(
        ev,
        Some(Event::Nack {
            type_url: CLUSTER.into(),
            message: "bad cluster".into()
        })
    );
    assert!(
        again.is_empty(),
        "resending what was just rejected would loop"
    );
    let fixed = st.on_snapshot(&s3);
    assert_eq!(fixed.len(), 1, "the next snapshot goes out");
}

#[test]
fn sotw_stale_nonce_is_ignored() {
    let (s1, s2) = (snap(ONE), snap(TWO));
    let mut st = Sotw::default();
    let (first, _) = st.on_request(&req(CLUSTER, "", "", &[]), &s1);
    st.on_request(
        &req(CLUSTER, &first[0].version_info, &first[0].nonce, &[]),
        &s1,
    );
    let second = st.on_snapshot(&s2);
    let (out, ev) = st.on_request(
        &req(CLUSTER, &first[0].version_info, &first[0].nonce, &[]),
        &s2,
    );
    assert!(out.is_empty() && ev.is_none());
    let (_, ev) = st.on_request(
        &req(CLUSTER, &second[0].version_info, &second[0].nonce, &[]),
        &s2,
    );
    assert!(matches!(ev, Some(Event::Ack { .. })));
}

#[test]
fn sotw_named_subscription_gets_only_those_and_a_new_name_is_answered() {
    let s = snap(ONE);
    let mut st = Sotw::default();
    let (out, _) = st.on_request(&req(EXTENSION, "", "", &["aimesh.auth"]), &s);
    assert_eq!(out[0].resources.len(), 1);
    let (out, _) = st.on_request(
        &req(
            EXTENSION,
            &out[0].version_info,
            &out[0].nonce,
            &["aimesh.auth", "aimesh.header-auth"],
        ),
        &s,
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].resources.len(), 2);
}

fn dreq(type_url: &str, nonce: &str, sub: &[&str]) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        type_url: type_url.into(),
        response_nonce: nonce.into(),
        resource_names_subscribe: sub.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

#[test]
fn delta_sends_only_changed_and_removed_resources() {
    let (s1, s2, s3) = (snap(TWO), snap(THREE), snap(ONE));
    let mut st = Delta::default();
    let (out, _) = st.on_request(&dreq(CLUSTER, "", &[]), &s1);
    assert_eq!(out[0].resources.len(), 2);
    let (out, ev) = st.on_request(&dreq(CLUSTER, &out[0].nonce, &[]), &s1);
    assert!(out.is_empty());
    assert!(matches!(ev, Some(Event::Ack { .. })));
    let out = st.on_snapshot(&s2);
    assert_eq!(out.len(), 1);
    let names: Vec<_> = out[0].resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["provider.pa1"], "only the changed cluster is sent");
    let out = st.on_snapshot(&s3);
    assert_eq!(out[0].removed_resources, ["provider.pb1"]);
    assert!(out[0].resources.len() == 1 && out[0].resources[0].name == "provider.pa1");
}

#[test]
fn delta_update_during_ack_sends_at_once_and_both_acks_count() {
    let (s1, s2) = (snap(ONE), snap(TWO));
    let mut st = Delta::default();
    let (first, _) = st.on_request(&dreq(CLUSTER, "", &[]), &s1);
    let second = st.on_snapshot(&s2);
    assert_eq!(second.len(), 1, "delta does not wait for the ACK");
    let (_, ev1) = st.on_request(&dreq(CLUSTER, &first[0].nonce, &[]), &s2);
    let (out, ev2) = st.on_request(&dreq(CLUSTER, &second[0].nonce, &[]), &s2);
    assert!(matches!(ev1, Some(Event::Ack { .. })) && matches!(ev2, Some(Event::Ack { .. })));
    assert!(out.is_empty());
}

#[test]
fn delta_nack_is_reported_and_not_resent_until_the_next_change() {
    let (s1, s2, s3) = (snap(ONE), snap(TWO), snap(THREE));
    let mut st = Delta::default();
    let (first, _) = st.on_request(&dreq(CLUSTER, "", &[]), &s1);
    st.on_request(&dreq(CLUSTER, &first[0].nonce, &[]), &s1);
    let out = st.on_snapshot(&s2);
    let mut r = dreq(CLUSTER, &out[0].nonce, &[]);
    r.error_detail = Some(Status {
        code: 3,
        message: "no".into(),
        ..Default::default()
    });
    let (again, ev) = st.on_request(&r, &s2);
    assert!(matches!(ev, Some(Event::Nack { .. })));
    assert!(again.is_empty());
    assert!(st.on_snapshot(&s2).is_empty());
    assert_eq!(st.on_snapshot(&s3).len(), 1);
}

#[test]
fn delta_reconnect_with_initial_versions_gets_only_what_differs() {
    let (s1, s2) = (snap(TWO), snap(THREE));
    let mut old = Delta::default();
    let (out, _) = old.on_request(&dreq(CLUSTER, "", &[]), &s1);
    let mut r = dreq(CLUSTER, "", &[]);
    r.initial_resource_versions = out[0]
        .resources
        .iter()
        .map(|x| (x.name.clone(), x.version.clone()))
        .collect();
    let mut fresh = Delta::default();
    let (out, _) = fresh.on_request(&r, &s2);
    let names: Vec<_> = out[0].resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["provider.pa1"]);
}

#[test]
fn delta_named_subscription_and_unsubscribe() {
    // TWO -> THREE moves one provider: clusters change, filter configs do not.
    let (s1, s2) = (snap(TWO), snap(THREE));
    let mut st = Delta::default();
    let (out, _) = st.on_request(&dreq(EXTENSION, "", &["aimesh.auth"]), &s1);
    assert_eq!(out[0].resources.len(), 1);
    let (out, _) = st.on_request(
        &dreq(EXTENSION, &out[0].nonce, &["aimesh.header-auth"]),
        &s1,
    );
    let names: Vec<_> = out[0].resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["aimesh.header-auth"]);
    let mut r = dreq(EXTENSION, &out[0].nonce, &[]);
    r.resource_names_unsubscribe = vec!["aimesh.auth".into()];
    let (out, _) = st.on_request(&r, &s1);
    assert!(out.is_empty());
    assert!(
        st.on_snapshot(&s2).is_empty(),
        "filter configs did not change"
    );
}
