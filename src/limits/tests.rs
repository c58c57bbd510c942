//! The ledger's rules, each with the test clock.

use super::*;

/// 2024-02-28T23:59:59Z, a Wednesday before a leap day.
const T0: i64 = 1_709_164_799_000;

fn ms(rfc: &str) -> i64 {
    crate::domain::time::parse_rfc3339(rfc).expect(rfc)
}

fn limits(rpm: u64, tpm: u64, budget: u64, period: BudgetPeriod) -> Limits {
    Limits {
        rpm,
        tpm,
        budget,
        period,
        policy: UsagePolicy::Reject,
    }
}

fn src(model: &str) -> Source {
    Source {
        tenant_id: "t".into(),
        key_id: "k".into(),
        model: model.into(),
        ..Source::default()
    }
}

fn rec(model: &str) -> Option<Source> {
    Some(src(model))
}

fn ask(tokens: u64) -> Ask {
    Ask {
        tokens,
        source: src("gpt-4o"),
    }
}

fn admitted(d: Decision) -> u64 {
    match d {
        Decision::Admitted { id, exceeded: None } => id,
        other => panic!("expected admitted, got {other:?}"),
    }
}

fn refused(d: Decision) -> (Exceeded, Option<u64>) {
    match d {
        Decision::Refused {
            exceeded,
            retry_after,
        } => (exceeded, retry_after),
        other => panic!("expected refused, got {other:?}"),
    }
}

#[test]
fn the_requests_per_minute_admit_exactly_the_limit_and_free_one_slot_sixty_seconds_later() {
    let l = limits(5, 0, 0, BudgetPeriod::Month);
    let mut g = Ledger::default();
    let start = ms("2026-12-01T10:00:00.250Z");
    for i in 0..5 {
        admitted(g.reserve(&l, &ask(1), start + i * 10_000));
    }
    // The sixth, 45 s after the first: the first leaves the window at 60 s, so 15 s to wait.
    let (what, wait) = refused(g.reserve(&l, &ask(1), start + 45_000));
    assert_eq!((what, wait), (Exceeded::Rpm, Some(15)));
    // One millisecond before the first's second leaves the window, still refused; at it, admitted.
    let edge = ms("2026-12-01T10:01:00Z");
    assert_eq!(refused(g.reserve(&l, &ask(1), edge - 1)).0, Exceeded::Rpm);
    admitted(g.reserve(&l, &ask(1), edge));
    assert_eq!(refused(g.reserve(&l, &ask(1), edge)).1, Some(10));
}

#[test]
fn the_tokens_per_minute_count_reservations_and_say_when_enough_tokens_leave() {
    let l = limits(0, 1_000, 0, BudgetPeriod::Month);
    let mut g = Ledger::default();
    let t = ms("2026-12-01T10:00:00Z");
    admitted(g.reserve(&l, &ask(400), t));
    admitted(g.reserve(&l, &ask(400), t + 20_000));
    // 800 in the window: 300 more do not fit until the first 400 leave at t + 60 s.
    assert_eq!(
        refused(g.reserve(&l, &ask(300), t + 30_000)),
        (Exceeded::Tpm, Some(30))
    );
    // 200 fit exactly.
    admitted(g.reserve(&l, &ask(200), t + 30_000));
    assert_eq!(g.window(t + 30_000), (3, 1_000));
    assert_eq!(g.window(t + 60_000), (2, 600));
}

#[test]
fn a_request_larger_than_the_whole_limit_is_too_large_not_a_wait() {
    let mut g = Ledger::default();
    let t = ms("2026-12-01T10:00:00Z");
    assert_eq!(
        g.reserve(&limits(0, 100, 0, BudgetPeriod::Day), &ask(101), t),
        Decision::TooLarge {
            exceeded: Exceeded::Tpm,
            limit: 100
        }
    );
    assert_eq!(
        g.reserve(&limits(0, 0, 50, BudgetPeriod::Day), &ask(51), t),
        Decision::TooLarge {
            exceeded: Exceeded::Budget,
            limit: 50
        }
    );
    let mut anyway = limits(0, 100, 0, BudgetPeriod::Day);
    anyway.policy = UsagePolicy::UseAnyway;
    assert!(matches!(
        g.reserve(&anyway, &ask(101), t),
        Decision::Admitted {
            exceeded: Some(Exceeded::Tpm),
            ..
        }
    ));
}

#[test]
fn a_budget_counts_settled_and_reserved_tokens_and_admits_exactly_what_fits() {
    let l = limits(0, 0, 1_000, BudgetPeriod::Month);
    let mut g = Ledger::default();
    let t = ms("2026-12-10T10:00:00Z");
    let ids: Vec<u64> = (0..10)
        .map(|_| admitted(g.reserve(&l, &ask(100), t)))
        .collect();
    // Ten reservations of 100 hold the whole budget: the eleventh waits for them (1 s).
    assert_eq!(
        refused(g.reserve(&l, &ask(100), t)),
        (Exceeded::Budget, Some(1))
    );
    for id in &ids {
        g.settle(
            &l,
            *id,
            Used {
                input: 60,
                output: 40,
            },
            rec("gpt-4o").as_ref(),
            t + 1_000,
        );
    }
    assert_eq!((g.spent(), g.reserved()), (1_000, 0));
    // Spent: only the next month frees it, 2026-12-10T10:00:01 to 2027-01-01.
    let (what, wait) = refused(g.reserve(&l, &ask(1), t + 1_000));
    assert_eq!(what, Exceeded::Budget);
    assert_eq!(
        wait,
        Some(((ms("2027-01-01T00:00:00Z") - t - 1_000) / 1000) as u64)
    );
}

#[test]
fn settling_below_the_reservation_frees_the_rest_and_above_it_charges_the_overrun() {
    let l = limits(0, 1_000, 1_000, BudgetPeriod::Day);
    let mut g = Ledger::default();
    let t = ms("2026-12-10T10:00:00Z");
    let a = admitted(g.reserve(&l, &ask(500), t));
    let b = admitted(g.reserve(&l, &ask(500), t));
    g.settle(
        &l,
        a,
        Used {
            input: 50,
            output: 50,
        },
        rec("m").as_ref(),
        t + 500,
    );
    assert_eq!(
        (g.spent(), g.reserved(), g.window(t + 500).1),
        (100, 500, 600)
    );
    g.settle(
        &l,
        b,
        Used {
            input: 300,
            output: 400,
        },
        rec("m").as_ref(),
        t + 900,
    );
    // The answer overran its reservation by 200: charged in full, the budget over by nothing
    // more than that overrun.
    assert_eq!(
        (g.spent(), g.reserved(), g.window(t + 900).1),
        (800, 0, 800)
    );
    let c = admitted(g.reserve(&l, &ask(200), t + 900));
    g.settle(
        &l,
        c,
        Used {
            input: 100,
            output: 150,
        },
        rec("m").as_ref(),
        t + 950,
    );
    assert_eq!(g.spent(), 1_050);
    assert_eq!(refused(g.reserve(&l, &ask(1), t + 950)).0, Exceeded::Tpm);
}

#[test]
fn a_released_reservation_gives_its_tokens_back_but_the_request_still_counts() {
    let l = limits(2, 100, 100, BudgetPeriod::Day);
    let mut g = Ledger::default();
    let t = ms("2026-12-10T10:00:00Z");
    let a = admitted(g.reserve(&l, &ask(100), t));
    assert_eq!(refused(g.reserve(&l, &ask(1), t)).0, Exceeded::Tpm);
    g.release(&l, a, t + 10);
    assert_eq!((g.spent(), g.reserved(), g.window(t + 10)), (0, 0, (1, 0)));
    admitted(g.reserve(&l, &ask(100), t + 20));
    assert_eq!(refused(g.reserve(&l, &ask(1), t + 30)).0, Exceeded::Rpm);
    // Releasing twice (or an unknown id) changes nothing.
    g.release(&l, a, t + 40);
    g.release(&l, 999, t + 40);
    assert_eq!(g.reserved(), 100);
}

#[test]
fn a_reservation_left_behind_expires_and_a_late_settlement_still_charges_its_usage() {
    let l = limits(0, 0, 1_000, BudgetPeriod::Month);
    let mut g = Ledger::default();
    let t = ms("2026-12-10T10:00:00Z");
    let id = admitted(g.reserve(&l, &ask(1_000), t));
    assert_eq!(refused(g.reserve(&l, &ask(1), t + 60_000)).1, Some(1));
    assert_eq!(
        refused(g.reserve(&l, &ask(1), t + RESERVATION_TTL_MS - 1)).0,
        Exceeded::Budget
    );
    // At its expiry the dropped call's tokens are free again.
    let next = admitted(g.reserve(&l, &ask(1_000), t + RESERVATION_TTL_MS));
    assert_eq!(g.reserved(), 1_000);
    // The first call's answer arrives after all: what it used is charged.
    g.settle(
        &l,
        id,
        Used {
            input: 10,
            output: 20,
        },
        rec("gpt-4o").as_ref(),
        t + RESERVATION_TTL_MS + 1,
    );
    assert_eq!((g.spent(), g.reserved()), (30, 1_000));
    g.release(&l, next, t + RESERVATION_TTL_MS + 2);
    assert_eq!(g.reserved(), 0);
}

#[test]
fn periods_start_at_utc_midnight_on_the_day_the_monday_and_the_first_of_the_month() {
    for (period, at, start, end) in [
        (
            BudgetPeriod::Day,
            "2024-02-28T23:59:59Z",
            "2024-02-28T00:00:00Z",
            "2024-02-29T00:00:00Z",
        ),
        (
            BudgetPeriod::Day,
            "2024-02-29T12:00:00Z",
            "2024-02-29T00:00:00Z",
            "2024-03-01T00:00:00Z",
        ),
        (
            BudgetPeriod::Day,
            "2026-12-31T23:59:59.999Z",
            "2026-12-31T00:00:00Z",
            "2027-01-01T00:00:00Z",
        ),
        // 2026-12-03 is a Thursday; its week began on Monday 2026-11-30.
        (
            BudgetPeriod::Week,
            "2026-12-03T08:00:00Z",
            "2026-11-30T00:00:00Z",
            "2026-12-07T00:00:00Z",
        ),
        (
            BudgetPeriod::Week,
            "2026-11-30T00:00:00Z",
            "2026-11-30T00:00:00Z",
            "2026-12-07T00:00:00Z",
        ),
        (
            BudgetPeriod::Week,
            "2026-11-29T23:59:59Z",
            "2026-11-23T00:00:00Z",
            "2026-11-30T00:00:00Z",
        ),
        // February of a leap year has 29 days, of another 28; December rolls the year.
        (
            BudgetPeriod::Month,
            "2024-02-29T23:59:59Z",
            "2024-02-01T00:00:00Z",
            "2024-03-01T00:00:00Z",
        ),
        (
            BudgetPeriod::Month,
            "2025-02-15T00:00:00Z",
            "2025-02-01T00:00:00Z",
            "2025-03-01T00:00:00Z",
        ),
        (
            BudgetPeriod::Month,
            "2026-04-30T10:00:00Z",
            "2026-04-01T00:00:00Z",
            "2026-05-01T00:00:00Z",
        ),
        (
            BudgetPeriod::Month,
            "2026-12-31T23:00:00Z",
            "2026-12-01T00:00:00Z",
            "2027-01-01T00:00:00Z",
        ),
    ] {
        let s = period_start(period, ms(at));
        assert_eq!(s, ms(start), "{period:?} {at}");
        assert_eq!(period_end(period, s), Some(ms(end)), "{period:?} {at}");
    }
    assert_eq!(period_start(BudgetPeriod::Total, T0), 0);
    assert_eq!(period_end(BudgetPeriod::Total, 0), None);
}

#[test]
fn a_budget_resets_by_itself_at_the_period_boundary_and_a_total_never_does() {
    let day = limits(0, 0, 100, BudgetPeriod::Day);
    let mut g = Ledger::default();
    // 2024-02-28T23:59:59Z: spent the day's budget one second before midnight.
    let id = admitted(g.reserve(&day, &ask(100), T0));
    g.settle(
        &day,
        id,
        Used {
            input: 100,
            output: 0,
        },
        rec("m").as_ref(),
        T0 + 100,
    );
    assert_eq!(
        refused(g.reserve(&day, &ask(1), T0 + 200)),
        (Exceeded::Budget, Some(1))
    );
    // Leap day, 00:00:00: a new period, nothing spent.
    admitted(g.reserve(&day, &ask(100), T0 + 1_000));
    assert_eq!(g.spent(), 0);
    assert_eq!(g.period_start_ms(), ms("2024-02-29T00:00:00Z"));

    let total = limits(0, 0, 100, BudgetPeriod::Total);
    let mut g = Ledger::default();
    let id = admitted(g.reserve(&total, &ask(100), T0));
    g.settle(
        &total,
        id,
        Used {
            input: 100,
            output: 0,
        },
        rec("m").as_ref(),
        T0,
    );
    let years_later = T0 + 3 * 366 * DAY_MS;
    assert_eq!(
        refused(g.reserve(&total, &ask(1), years_later)),
        (Exceeded::Budget, None)
    );
}

#[test]
fn a_month_budget_resets_on_the_first_of_each_month_whatever_its_length() {
    let l = limits(0, 0, 10, BudgetPeriod::Month);
    let mut g = Ledger::default();
    for (spend_at, blocked_at, reset_at) in [
        (
            "2024-01-31T23:00:00Z",
            "2024-01-31T23:59:59Z",
            "2024-02-01T00:00:00Z",
        ),
        (
            "2024-02-29T23:00:00Z",
            "2024-02-29T23:59:59Z",
            "2024-03-01T00:00:00Z",
        ),
        (
            "2025-02-28T23:00:00Z",
            "2025-02-28T23:59:59Z",
            "2025-03-01T00:00:00Z",
        ),
        (
            "2026-04-30T23:00:00Z",
            "2026-04-30T23:59:59Z",
            "2026-05-01T00:00:00Z",
        ),
    ] {
        let id = admitted(g.reserve(&l, &ask(10), ms(spend_at)));
        g.settle(
            &l,
            id,
            Used {
                input: 10,
                output: 0,
            },
            rec("m").as_ref(),
            ms(spend_at),
        );
        assert_eq!(
            refused(g.reserve(&l, &ask(1), ms(blocked_at))),
            (Exceeded::Budget, Some(1)),
            "{blocked_at}"
        );
        let id = admitted(g.reserve(&l, &ask(1), ms(reset_at)));
        g.release(&l, id, ms(reset_at));
        assert_eq!(g.spent(), 0, "{reset_at}");
    }
}

#[test]
fn changing_the_budget_or_its_period_mid_period_keeps_the_spend_so_far() {
    let mut g = Ledger::default();
    let t = ms("2026-12-10T10:00:00Z");
    let month = limits(0, 0, 1_000, BudgetPeriod::Month);
    let id = admitted(g.reserve(&month, &ask(600), t));
    g.settle(
        &month,
        id,
        Used {
            input: 600,
            output: 0,
        },
        rec("m").as_ref(),
        t,
    );
    // Lowered below the spend: refused at once, until the month ends.
    let lowered = limits(0, 0, 500, BudgetPeriod::Month);
    assert_eq!(
        refused(g.reserve(&lowered, &ask(1), t + 1)).0,
        Exceeded::Budget
    );
    // Raised: the 600 already spent count against the new 2,000.
    let raised = limits(0, 0, 2_000, BudgetPeriod::Month);
    admitted(g.reserve(&raised, &ask(1_400), t + 2));
    assert_eq!(
        refused(g.reserve(&raised, &ask(1), t + 3)).0,
        Exceeded::Budget
    );
    // Month to day: the spend stays, and the day's end resets it.
    let day = limits(0, 0, 3_000, BudgetPeriod::Day);
    admitted(g.reserve(&day, &ask(1_000), t + 4));
    assert_eq!(
        (g.spent(), g.period_start_ms()),
        (600, ms("2026-12-10T00:00:00Z"))
    );
    g.reserve(&day, &ask(1), ms("2026-12-11T00:00:00Z"));
    assert_eq!(g.spent(), 0);
}

#[test]
fn a_budget_set_mid_period_starts_from_the_periods_spend_so_far() {
    let mut g = Ledger::default();
    let t = ms("2026-12-10T10:00:00Z");
    let rpm_only = limits(100, 0, 0, BudgetPeriod::Month);
    let id = admitted(g.reserve(&rpm_only, &ask(50), t));
    g.settle(
        &rpm_only,
        id,
        Used {
            input: 50,
            output: 30,
        },
        rec("m").as_ref(),
        t,
    );
    let budget = limits(100, 0, 100, BudgetPeriod::Month);
    admitted(g.reserve(&budget, &ask(20), t + 1));
    assert_eq!(
        refused(g.reserve(&budget, &ask(1), t + 2)).0,
        Exceeded::Budget
    );
}

#[test]
fn use_anyway_admits_past_every_limit_and_names_the_one_it_went_over() {
    let mut l = limits(1, 0, 10, BudgetPeriod::Day);
    l.policy = UsagePolicy::UseAnyway;
    let mut g = Ledger::default();
    let t = ms("2026-12-10T10:00:00Z");
    admitted(g.reserve(&l, &ask(5), t));
    for (at, want) in [(t + 1, Exceeded::Rpm), (t + 61_000, Exceeded::Budget)] {
        match g.reserve(&l, &ask(6), at) {
            Decision::Admitted {
                exceeded: Some(e), ..
            } => assert_eq!(e, want),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(g.reserved(), 17);
}

#[test]
fn usage_is_gathered_per_model_and_hour_with_day_totals_and_rejections() {
    let l = limits(1, 0, 0, BudgetPeriod::Day);
    let mut g = Ledger::default();
    let h10 = ms("2026-12-10T10:15:00Z");
    let a = admitted(g.reserve(&l, &ask(10), h10));
    g.settle(
        &l,
        a,
        Used {
            input: 7,
            output: 3,
        },
        rec("gpt-4o").as_ref(),
        h10 + 1,
    );
    refused(g.reserve(&l, &ask(10), h10 + 2));
    let b = admitted(g.reserve(&l, &ask(10), ms("2026-12-10T11:59:59Z")));
    g.settle(
        &l,
        b,
        Used {
            input: 1,
            output: 2,
        },
        rec("gpt-4o").as_ref(),
        ms("2026-12-10T11:59:59.5Z"),
    );
    let c = admitted(g.reserve(
        &l,
        &Ask {
            tokens: 1,
            source: src("n"),
        },
        ms("2026-12-11T00:30:00Z"),
    ));
    g.settle(
        &l,
        c,
        Used {
            input: 4,
            output: 4,
        },
        rec("n").as_ref(),
        ms("2026-12-11T00:30:01Z"),
    );
    let f = g.take_flush();
    let hour = |m: &str, at: &str, t: Totals, last: &str| Bucket {
        source: src(m),
        start_ms: ms(at),
        totals: t,
        last_ms: ms(last),
    };
    let tot = |requests, input_tokens, output_tokens, rejected| Totals {
        requests,
        input_tokens,
        output_tokens,
        rejected,
    };
    let (last_a, last_b, last_c) = (
        "2026-12-10T10:15:00.001Z",
        "2026-12-10T11:59:59.5Z",
        "2026-12-11T00:30:01Z",
    );
    assert_eq!(
        f.hours,
        vec![
            hour("gpt-4o", "2026-12-10T10:00:00Z", tot(1, 7, 3, 1), last_a),
            hour("gpt-4o", "2026-12-10T11:00:00Z", tot(1, 1, 2, 0), last_b),
            hour("n", "2026-12-11T00:00:00Z", tot(1, 4, 4, 0), last_c),
        ]
    );
    assert_eq!(
        f.days,
        vec![
            hour("gpt-4o", "2026-12-10T00:00:00Z", tot(2, 8, 5, 1), last_b),
            hour("n", "2026-12-11T00:00:00Z", tot(1, 4, 4, 0), last_c),
        ]
    );
    assert!(g.take_flush().is_empty());
    // A flush that failed is put back and added to what came since.
    g.restore(f);
    let n = Ask {
        tokens: 1,
        source: src("n"),
    };
    let d = admitted(g.reserve(&l, &n, ms("2026-12-11T00:40:00Z")));
    g.settle(
        &l,
        d,
        Used {
            input: 1,
            output: 1,
        },
        rec("n").as_ref(),
        ms("2026-12-11T00:40:00Z"),
    );
    let again = g.take_flush();
    assert_eq!(again.hours.len(), 3);
    assert_eq!(again.hours[2].totals, tot(2, 5, 5, 0));
}

#[test]
fn a_settlement_without_a_record_counts_the_spend_but_gathers_no_usage() {
    let l = limits(0, 0, 100, BudgetPeriod::Day);
    let mut g = Ledger::default();
    let t = ms("2026-12-10T10:00:00Z");
    let id = admitted(g.reserve(&l, &ask(10), t));
    let used = Used {
        input: 3,
        output: 4,
    };
    g.settle(&l, id, used, None, t);
    assert_eq!(g.spent(), 7);
    assert!(g.take_flush().is_empty());
    // A call this ledger only records (no reservation here) still counts what it used.
    g.settle(&l, 0, used, rec("m").as_ref(), t + 1);
    assert_eq!(g.spent(), 14);
    assert_eq!(g.take_flush().hours[0].totals.requests, 1);
}

#[test]
fn the_budget_raises_one_alert_at_80_and_one_at_100_percent_per_period() {
    let l = limits(0, 0, 100, BudgetPeriod::Day);
    let mut g = Ledger::default();
    let t = ms("2026-12-10T10:00:00Z");
    let spend = |g: &mut Ledger, n: u64, at: i64| {
        let id = admitted(g.reserve(&l, &ask(n), at));
        g.settle(
            &l,
            id,
            Used {
                input: n,
                output: 0,
            },
            rec("m").as_ref(),
            at,
        );
    };
    spend(&mut g, 79, t);
    assert!(g.alerts_due(t).is_empty());
    spend(&mut g, 1, t + 1);
    spend(&mut g, 5, t + 2);
    let due = g.alerts_due(t + 2);
    assert_eq!(due.iter().map(|a| a.threshold).collect::<Vec<_>>(), [80]);
    assert_eq!((due[0].spent, due[0].budget), (80, 100));
    spend(&mut g, 15, t + 3);
    assert_eq!(g.alerts_due(t + 3).len(), 2);
    // Delivered: gone. Failed: tried again 30 s, then 60 s later, at most five times.
    let due = g.alerts_due(t + 3);
    let (eighty, hundred) = (&due[0], &due[1]);
    assert!(!g.alert_attempted(eighty, true, t + 4, 30_000));
    assert!(g.alert_attempted(hundred, false, t + 4, 30_000));
    assert!(g.alerts_due(t + 4).is_empty());
    assert_eq!(g.next_alert_ms(), Some(t + 30_004));
    assert!(g.alert_attempted(hundred, false, t + 30_004, 30_000));
    assert_eq!(g.next_alert_ms(), Some(t + 90_004));
    assert!(g.alert_attempted(hundred, false, t + 90_004, 30_000));
    assert!(g.alert_attempted(hundred, false, t + 200_000, 30_000));
    assert!(!g.alert_attempted(hundred, false, t + 500_000, 30_000));
    assert_eq!(g.next_alert_ms(), None);
    // The next day: a new period, new alerts.
    spend(&mut g, 90, ms("2026-12-11T01:00:00Z"));
    let next = g.alerts_due(ms("2026-12-11T01:00:00Z"));
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].period_start_ms, ms("2026-12-11T00:00:00Z"));
}

#[test]
fn a_budget_changed_mid_period_raises_its_own_alerts_once() {
    let small = limits(0, 0, 100, BudgetPeriod::Month);
    let large = limits(0, 0, 1000, BudgetPeriod::Month);
    let mut g = Ledger::default();
    let t = ms("2026-12-10T10:00:00Z");
    let spend = |g: &mut Ledger, l: &Limits, n: u64, at: i64| {
        let id = admitted(g.reserve(l, &ask(n), at));
        g.settle(
            l,
            id,
            Used {
                input: n,
                output: 0,
            },
            None,
            at,
        );
    };
    spend(&mut g, &small, 85, t);
    let first = g.alerts_due(t);
    assert_eq!(first.len(), 1);
    assert!(!g.alert_attempted(&first[0], true, t, 1000));
    // Raised to 1000: 85 is 8.5%, nothing new; then 80% of the new budget is its own alert.
    spend(&mut g, &large, 10, t + 1);
    assert!(g.alerts_due(t + 1).is_empty());
    spend(&mut g, &large, 710, t + 2);
    let second = g.alerts_due(t + 2);
    assert_eq!(
        second
            .iter()
            .map(|a| (a.threshold, a.budget))
            .collect::<Vec<_>>(),
        [(80, 1000)]
    );
    assert!(!second[0].same_event(&first[0]));
    // The same budget sent again with later calls raises nothing twice.
    spend(&mut g, &large, 1, t + 3);
    assert_eq!(g.alerts_due(t + 3).len(), 1);
}

#[test]
fn a_call_the_rest_of_the_budget_cannot_carry_raises_the_thresholds_not_yet_raised() {
    let l = limits(0, 0, 100, BudgetPeriod::Month);
    let mut g = Ledger::default();
    let t = ms("2026-12-10T10:00:00Z");
    let id = admitted(g.reserve(&l, &ask(70), t));
    g.settle(
        &l,
        id,
        Used {
            input: 70,
            output: 0,
        },
        None,
        t,
    );
    assert!(g.alerts_due(t).is_empty());
    // 70 + 40 > 100: refused, and both thresholds go out, marked as raised by the refusal.
    assert!(matches!(
        g.reserve(&l, &ask(40), t + 1),
        Decision::Refused {
            exceeded: Exceeded::Budget,
            ..
        }
    ));
    let due = g.alerts_due(t + 1);
    assert_eq!(
        due.iter()
            .map(|a| (a.threshold, a.spent, a.refused))
            .collect::<Vec<_>>(),
        [(80, 70, true), (100, 70, true)]
    );
    // Refused again: nothing new. A call in flight holding the rest is no such refusal.
    g.reserve(&l, &ask(40), t + 2);
    assert_eq!(g.alerts_due(t + 2).len(), 2);
    let mut h = Ledger::default();
    admitted(h.reserve(&l, &ask(90), t));
    assert!(matches!(
        h.reserve(&l, &ask(20), t),
        Decision::Refused { .. }
    ));
    assert!(h.alerts_due(t).is_empty());
    // Under use_anyway the call goes through, and the settlement raises what it reaches.
    let anyway = Limits {
        policy: UsagePolicy::UseAnyway,
        ..l
    };
    let mut u = Ledger::default();
    let id = match u.reserve(&anyway, &ask(110), t) {
        Decision::Admitted {
            id,
            exceeded: Some(Exceeded::Budget),
        } => id,
        other => panic!("expected admitted past the budget, got {other:?}"),
    };
    u.settle(
        &anyway,
        id,
        Used {
            input: 110,
            output: 0,
        },
        None,
        t,
    );
    assert_eq!(
        u.alerts_due(t)
            .iter()
            .map(|a| (a.threshold, a.refused))
            .collect::<Vec<_>>(),
        [(80, false), (100, false)]
    );
}

#[test]
fn the_ledger_remembers_whose_it_is_from_the_operations_sent_to_it() {
    let l = limits(0, 0, 100, BudgetPeriod::Month);
    let scope = Scope::Key {
        tenant_id: "t1".into(),
        key_id: "k1".into(),
    };
    let mut g = Ledger::default();
    assert_eq!(g.owner(), None);
    let env = Envelope {
        scope: scope.clone(),
        op: Op::Reserve {
            limits: l,
            ask: ask(1),
        },
    };
    assert!(env.apply(&mut g, ms("2026-12-10T10:00:00Z")).is_some());
    assert_eq!(g.owner(), Some(&scope));
    // It survives being stored, and a ledger stored before owners were kept still loads.
    let back: Ledger = serde_json::from_str(&serde_json::to_string(&g).unwrap()).unwrap();
    assert_eq!(back.owner(), Some(&scope));
    let mut old = serde_json::to_value(Ledger::default()).unwrap();
    let o = old.as_object_mut().unwrap();
    o.remove("owner");
    o.remove("alerted_for");
    assert!(serde_json::from_value::<Ledger>(old).is_ok());
}

#[test]
fn an_alert_not_delivered_by_the_end_of_its_period_is_dropped_with_it() {
    let l = limits(0, 0, 100, BudgetPeriod::Day);
    let mut g = Ledger::default();
    let t = ms("2026-12-10T23:00:00Z");
    let id = admitted(g.reserve(&l, &ask(85), t));
    g.settle(
        &l,
        id,
        Used {
            input: 85,
            output: 0,
        },
        None,
        t,
    );
    assert_eq!(g.alerts_due(t).len(), 1);
    let next_day = ms("2026-12-11T00:00:01Z");
    let id = admitted(g.reserve(&l, &ask(1), next_day));
    g.settle(
        &l,
        id,
        Used {
            input: 1,
            output: 0,
        },
        None,
        next_day,
    );
    assert!(g.alerts_due(next_day).is_empty());
    assert!(!g.has_pending());
}

#[test]
fn the_local_counters_apply_ops_in_order_per_scope_and_fail_when_down() {
    let c = LocalCounters::default();
    c.now_ms.set(ms("2026-12-10T10:00:00Z"));
    let l = limits(1, 0, 0, BudgetPeriod::Day);
    let key = Scope::Key {
        tenant_id: "t".into(),
        key_id: "k".into(),
    };
    let tenant = Scope::Tenant {
        tenant_id: "t".into(),
    };
    let reserve = || Op::Reserve {
        limits: l,
        ask: ask(1),
    };
    let run = |s: &Scope| crate::limits::tests::block(c.apply(s, reserve()));
    assert!(matches!(run(&key), Ok(Some(Decision::Admitted { .. }))));
    assert!(matches!(run(&key), Ok(Some(Decision::Refused { .. }))));
    assert!(matches!(run(&tenant), Ok(Some(Decision::Admitted { .. }))));
    assert_ne!(key.name(), tenant.name());
    c.down.set(true);
    assert!(run(&tenant).is_err());
}

#[test]
fn an_op_survives_its_json_form_as_the_object_receives_it() {
    let op = Op::Settle {
        limits: limits(1, 2, 3, BudgetPeriod::Week),
        id: 7,
        used: Used {
            input: 1,
            output: 2,
        },
        record: rec("m"),
    };
    let text = serde_json::to_string(&op).unwrap();
    assert_eq!(serde_json::from_str::<Op>(&text).unwrap(), op);
    let d = Decision::Refused {
        exceeded: Exceeded::Rpm,
        retry_after: Some(3),
    };
    let text = serde_json::to_string(&d).unwrap();
    assert_eq!(
        text,
        r#"{"outcome":"refused","exceeded":"rpm","retry_after":3}"#
    );
    assert_eq!(serde_json::from_str::<Decision>(&text).unwrap(), d);
}

#[test]
fn a_ledger_in_use_survives_its_json_form_as_the_object_stores_it() {
    let l = limits(5, 1_000, 1_000, BudgetPeriod::Day);
    let mut g = Ledger::default();
    let t = ms("2026-12-10T10:00:00Z");
    let a = admitted(g.reserve(&l, &ask(100), t));
    admitted(g.reserve(&l, &ask(200), t + 1_500));
    g.settle(
        &l,
        a,
        Used {
            input: 60,
            output: 70,
        },
        rec("gpt-4o").as_ref(),
        t + 2_000,
    );
    for _ in 0..5 {
        let _ = g.reserve(&l, &ask(900), t + 3_000);
    }
    let text = serde_json::to_string(&g).expect("a ledger serializes to JSON");
    let back: Ledger = serde_json::from_str(&text).unwrap();
    assert_eq!(back, g);
    let mut g2 = back;
    assert_eq!(g2.take_flush(), g.take_flush());
}

/// Run a future that never waits (the local counters' do not).
fn block<F: std::future::Future>(f: F) -> F::Output {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("the local counters never wait"),
    }
}
