use std::cell::Cell;

use super::*;
use crate::host::MemoryStore;

const NOW: u64 = 1_709_000_000_000;

fn facts() -> HeaderFacts {
    HeaderFacts {
        model_known: true,
        ..HeaderFacts::default()
    }
}

#[test]
fn a_plain_request_with_auth_facts_is_not_held() {
    let p = plan_headers(&facts());
    assert_eq!(
        p,
        HeaderPlan {
            admit_prompt: None,
            read_body: false
        }
    );
}

#[test]
fn the_body_is_read_only_when_something_needs_it() {
    let read = |f: HeaderFacts| plan_headers(&f).read_body;
    assert!(read(HeaderFacts {
        model_known: false,
        ..facts()
    }));
    assert!(read(HeaderFacts {
        stream: true,
        ..facts()
    }));
    assert!(!read(HeaderFacts {
        stream: true,
        client_usage: true,
        ..facts()
    }));
    assert!(read(HeaderFacts {
        estimate_prompt: true,
        ..facts()
    }));
}

#[test]
fn limits_admit_from_headers_only_with_a_model_and_a_length() {
    let limited = HeaderFacts {
        limited: true,
        content_length: Some(401),
        ..facts()
    };
    assert_eq!(
        plan_headers(&limited),
        HeaderPlan {
            admit_prompt: Some(101),
            read_body: false
        }
    );
    // Chunked: the size is known only from the body.
    let chunked = HeaderFacts {
        content_length: None,
        ..limited
    };
    assert_eq!(
        plan_headers(&chunked),
        HeaderPlan {
            admit_prompt: None,
            read_body: true
        }
    );
    let no_model = HeaderFacts {
        model_known: false,
        ..limited
    };
    assert_eq!(plan_headers(&no_model).admit_prompt, None);
    let unlimited = HeaderFacts {
        limited: false,
        ..limited
    };
    assert_eq!(plan_headers(&unlimited).admit_prompt, None);
}

fn tpm(n: u64) -> Limits {
    Limits {
        tpm: Some(n),
        ..Limits::default()
    }
}

fn ask<'a>(limits: &'a Limits, prompt: u64, max_tokens: Option<u64>) -> Ask<'a> {
    Ask {
        key_id: "k",
        limits,
        prompt,
        max_tokens,
        price: None,
    }
}

#[test]
fn admission_reserves_prompt_plus_max_tokens_and_its_cost() {
    let s = MemoryStore::default();
    let l = Limits {
        tpm: Some(1_000),
        daily_micro_usd: Some(1_000_000),
        monthly_micro_usd: None,
    };
    admission::init_keys(&s, "k", &l, NOW).unwrap();
    let price = Price {
        input: 2.5,
        cached_input: None,
        cache_write: None,
        output: 10.0,
    };
    let a = Ask {
        price: Some(&price),
        ..ask(&l, 100, Some(50))
    };
    let Verdict::Admitted(r) = admit(&s, &a, NOW) else {
        panic!("admitted")
    };
    // 100 x 2.5 + 50 x 10 micro-USD.
    assert_eq!(
        (r.tokens, r.cost, r.remaining_tokens),
        (150, 750, Some(850))
    );
}

#[test]
fn a_refusal_carries_the_bucket_level() {
    let s = MemoryStore::default();
    let l = tpm(100);
    admission::init_keys(&s, "k", &l, NOW).unwrap();
    assert!(matches!(
        admit(&s, &ask(&l, 70, None), NOW),
        Verdict::Admitted(_)
    ));
    let v = admit(&s, &ask(&l, 20, Some(20)), NOW);
    assert_eq!(
        v,
        Verdict::Refused {
            refusal: Refusal::Tpm {
                retry_after_s: 6,
                remaining: 30
            },
            remaining_tpm: Some(30)
        }
    );
    // Budget-only keys have no bucket to report.
    let b = Limits {
        daily_micro_usd: Some(0),
        ..Limits::default()
    };
    let price = Price {
        input: 1.0,
        cached_input: None,
        cache_write: None,
        output: 1.0,
    };
    let v = admit(
        &s,
        &Ask {
            price: Some(&price),
            ..ask(&b, 1, None)
        },
        NOW,
    );
    assert!(
        matches!(
            v,
            Verdict::Refused {
                remaining_tpm: None,
                ..
            }
        ),
        "{v:?}"
    );
}

/// A store that fails every call, and counts them.
#[derive(Default)]
struct Broken {
    calls: Cell<usize>,
}

impl SharedStore for Broken {
    fn get(&self, _key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
        self.calls.set(self.calls.get() + 1);
        Err(StoreError::Unavailable)
    }
    fn set(&self, _key: &str, _value: &[u8], _cas: Option<u32>) -> Result<(), StoreError> {
        self.calls.set(self.calls.get() + 1);
        Err(StoreError::Unavailable)
    }
}

#[test]
fn a_store_fault_admits_the_request() {
    let l = tpm(10);
    // A request larger than the limit needs no store to be refused.
    assert!(matches!(
        admit(&Broken::default(), &ask(&l, 5, Some(100)), NOW),
        Verdict::Refused {
            refusal: Refusal::TpmNeverFits { .. },
            ..
        }
    ));
    assert_eq!(
        admit(&Broken::default(), &ask(&l, 5, None), NOW),
        Verdict::FailedOpen(StoreError::Unavailable)
    );
}

#[test]
fn default_keys_are_created_once_a_day_and_retried_after_a_fault() {
    let l = Limits {
        tpm: Some(10),
        daily_micro_usd: Some(5),
        monthly_micro_usd: None,
    };
    let mut days = KeyDays::default();
    let broken = Broken::default();
    assert!(days.ensure(&broken, "k", &l, NOW).is_err());
    assert!(days.ensure(&broken, "k", &l, NOW).is_err());
    assert_eq!(broken.calls.get(), 2, "a failed creation is not remembered");

    let s = MemoryStore::default();
    days.ensure(&s, "k", &l, NOW).unwrap();
    let (day, _) = admission::day_and_month(NOW);
    assert!(s
        .get(&format!("aimesh.ta.spend.d.{day}.k"))
        .unwrap()
        .0
        .is_some());
    // Same day: the store is not touched (a broken one would say so).
    days.ensure(&broken, "k", &l, NOW + 1_000).unwrap();
    assert_eq!(broken.calls.get(), 2);
    // The next day creates again.
    assert!(days.ensure(&broken, "k", &l, NOW + DAY_MS).is_err());
    assert_eq!(broken.calls.get(), 3);
}
