//! Unit and property tests of the task book.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use herd_protocol::messages::orchestrator::{
    CancelOutcome, RetryOutcome, SubmitAck, SubmitRejection, TaskQuery,
};
use herd_protocol::{
    AgentType, AssignmentEpoch, FailureKind, Incarnation, JsonText, MemberId, NodeName, Outcome,
    Priority, TaskAssignment, TaskId, TaskReport, TaskSpec, TaskState, UnixMillis, WorkerId,
};
use proptest::prelude::*;

use super::*;

#[path = "bytes_tests.rs"]
mod bytes_tests;

fn member(name: &str) -> MemberId {
    MemberId {
        name: NodeName::parse(name).unwrap(),
        incarnation: Incarnation(1),
    }
}

fn book_with(settings: TaskBookSettings) -> TaskBook {
    TaskBook::new(
        settings,
        ["echo", "sleep"].map(|name| (AgentType::new(name), AgentTypeSettings::default())),
    )
}

fn book() -> TaskBook {
    book_with(TaskBookSettings {
        retry: RetryPolicy::immediate(),
        ..TaskBookSettings::default()
    })
}

fn spec(agent_type: &str) -> TaskSpec {
    TaskSpec::new(agent_type, JsonText::parse("{\"n\":1}").unwrap())
}

fn at(ms: u64) -> UnixMillis {
    UnixMillis(1_000_000 + ms)
}

fn submit(book: &mut TaskBook, specs: Vec<TaskSpec>) -> Vec<SubmitAck> {
    let tasks = specs
        .into_iter()
        .map(|spec| (TaskId::new_v7(), spec))
        .collect();
    let submission = book
        .validate_submission(tasks, at(0))
        .unwrap_or_else(|rejection| panic!("unexpected rejection {rejection:?}"));
    let applied = book.submit(submission);
    assert!(applied.effects.is_empty(), "{:?}", applied.effects);
    applied.answer
}

fn assign(
    book: &mut TaskBook,
    who: &MemberId,
    agent_type: &str,
    max: usize,
) -> Vec<TaskAssignment> {
    book.apply(Command::Assign {
        member: who.clone(),
        agent_type: AgentType::new(agent_type),
        max,
        now: at(1),
    })
    .into_iter()
    .map(|effect| match effect {
        Effect::Dispatch { assignment, .. } => assignment,
        other => panic!("unexpected effect {other:?}"),
    })
    .collect()
}

fn report(assignment: &TaskAssignment, outcome: Outcome) -> TaskReport {
    TaskReport {
        task_id: assignment.task_id,
        epoch: assignment.epoch,
        worker: WorkerId(3),
        outcome,
        started_at: at(1),
        finished_at: at(2),
    }
}

fn success() -> Outcome {
    Outcome::Succeeded {
        result: JsonText::parse("{\"ok\":true}").unwrap(),
        score: Some(0.9),
    }
}

fn failure(kind: FailureKind) -> Outcome {
    Outcome::Failed {
        kind,
        message: "boom".into(),
    }
}

#[test]
fn a_task_runs_and_succeeds_once() {
    let mut book = book();
    let n1 = member("n1");
    let [ack] = submit(&mut book, vec![spec("echo")])[..] else {
        panic!()
    };
    assert_eq!(book.view(ack.id).unwrap().state, TaskState::Pending);
    let assignments = assign(&mut book, &n1, "echo", 10);
    assert_eq!(assignments.len(), 1);
    assert_eq!(assignments[0].attempt, 1);
    assert_eq!(book.running_on(&n1, &AgentType::new("echo")), 1);

    let effects = book.apply(Command::Report {
        member: n1.clone(),
        report: report(&assignments[0], success()),
        now: at(2),
    });
    assert!(matches!(
        effects.as_slice(),
        [
            Effect::AttemptEnded {
                failure: None,
                score: Some(_),
                ..
            },
            Effect::StateChanged {
                state: TaskState::Succeeded,
                ..
            }
        ]
    ));
    let view = book.view(ack.id).unwrap();
    assert_eq!(view.state, TaskState::Succeeded);
    assert_eq!(view.node.unwrap().as_str(), "n1");
    assert_eq!(view.worker, Some(WorkerId(3)));
    assert_eq!(view.result.unwrap().as_str(), "{\"ok\":true}");
    assert_eq!(view.score, Some(0.9));
    assert_eq!(book.running_on(&n1, &AgentType::new("echo")), 0);

    // The same attempt reported again (a re-send after a reconnect) is
    // recognised as already applied and changes nothing.
    let effects = book.apply(Command::Report {
        member: n1,
        report: report(&assignments[0], failure(FailureKind::Fatal)),
        now: at(3),
    });
    assert!(matches!(
        effects.as_slice(),
        [Effect::StaleReport {
            reason: StaleReason::AlreadyApplied,
            ..
        }]
    ));
    assert_eq!(book.view(ack.id).unwrap().state, TaskState::Succeeded);
    book.check_invariants();
}

#[test]
fn priorities_run_first_and_equal_priorities_in_order() {
    let mut book = book();
    let mut low = spec("echo");
    low.priority = Priority::new(1).unwrap();
    let mut high = spec("echo");
    high.priority = Priority::new(8).unwrap();
    let acks = submit(&mut book, vec![low, spec("echo"), high, spec("echo")]);
    let order: Vec<TaskId> = assign(&mut book, &member("n1"), "echo", 10)
        .iter()
        .map(|a| a.task_id)
        .collect();
    assert_eq!(order, vec![acks[2].id, acks[1].id, acks[3].id, acks[0].id]);
}

#[test]
fn idempotency_keys_return_the_existing_task() {
    let mut book = book();
    let mut keyed = spec("echo");
    keyed.idempotency_key = Some("order-17".into());
    let first = submit(&mut book, vec![keyed.clone()]);
    let again = submit(&mut book, vec![keyed.clone(), keyed]);
    assert!(!first[0].existing);
    assert_eq!(
        again[0],
        SubmitAck {
            id: first[0].id,
            existing: true
        }
    );
    assert_eq!(
        again[1],
        SubmitAck {
            id: first[0].id,
            existing: true
        }
    );
    assert_eq!(book.counts().pending, 1);
}

#[test]
fn batches_are_all_or_nothing_and_errors_name_the_fix() {
    let book = book();
    let tasks = vec![
        (TaskId::new_v7(), spec("echo")),
        (TaskId::new_v7(), spec("translate")),
    ];
    match book.validate_submission(tasks, at(0)) {
        Err(rejection @ SubmitRejection::UnknownAgentType { index: 1, .. }) => {
            assert_eq!(
                rejection.to_string(),
                "task 1: unknown agent type \"translate\"; known types: echo, sleep"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(book.counts().pending, 0);

    let mut big = spec("echo");
    big.payload = JsonText::parse(format!("\"{}\"", "x".repeat(2 * 1024 * 1024))).unwrap();
    let refused = book.validate_submission(vec![(TaskId::new_v7(), big)], at(0));
    assert!(matches!(
        refused,
        Err(SubmitRejection::PayloadTooLarge { .. })
    ));

    let mut bad_attempts = spec("echo");
    bad_attempts.max_attempts = Some(0);
    match book.validate_submission(vec![(TaskId::new_v7(), bad_attempts)], at(0)) {
        Err(rejection) => assert_eq!(
            rejection.to_string(),
            "task 0: max_attempts is 0; give 1 to 100"
        ),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn overload_is_refused_until_tasks_finish() {
    let mut book = book_with(TaskBookSettings {
        max_unfinished: 2,
        ..TaskBookSettings::default()
    });
    submit(&mut book, vec![spec("echo"), spec("echo")]);
    let refused = book.validate_submission(vec![(TaskId::new_v7(), spec("echo"))], at(0));
    assert!(matches!(
        refused,
        Err(SubmitRejection::Overloaded {
            pending: 2,
            limit: 2
        })
    ));
}

#[test]
fn retryable_failures_back_off_then_run_again_until_attempts_run_out() {
    let mut book = book_with(TaskBookSettings::default());
    let n1 = member("n1");
    let mut three = spec("echo");
    three.max_attempts = Some(2);
    let [ack] = submit(&mut book, vec![three])[..] else {
        panic!()
    };

    let first = assign(&mut book, &n1, "echo", 1);
    book.apply(Command::Report {
        member: n1.clone(),
        report: report(&first[0], failure(FailureKind::Retryable)),
        now: at(10),
    });
    let view = book.view(ack.id).unwrap();
    assert_eq!(view.state, TaskState::Failed);
    let due = view.retry_at.unwrap();
    assert!(
        due >= at(10).plus(Duration::from_secs(1)) && due < at(10).plus(Duration::from_secs(2))
    );
    assert!(
        assign(&mut book, &n1, "echo", 1).is_empty(),
        "not runnable before its retry time"
    );

    book.apply(Command::Tick {
        now: UnixMillis(due.0 - 1),
    });
    assert_eq!(book.view(ack.id).unwrap().state, TaskState::Failed);
    book.apply(Command::Tick { now: due });
    assert_eq!(book.view(ack.id).unwrap().state, TaskState::Pending);

    let second = assign(&mut book, &n1, "echo", 1);
    assert_eq!(second[0].attempt, 2);
    assert!(second[0].epoch > first[0].epoch);
    book.apply(Command::Report {
        member: n1,
        report: report(&second[0], failure(FailureKind::Timeout)),
        now: at(5000),
    });
    let view = book.view(ack.id).unwrap();
    assert_eq!(view.state, TaskState::Dead);
    let error = view.error.unwrap();
    assert_eq!(error.kind, FailureKind::Timeout);
    assert!(
        error.message.starts_with("gave up after 2 attempts"),
        "{}",
        error.message
    );
    book.check_invariants();
}

#[test]
fn fatal_errors_are_dead_at_once_and_can_be_retried_with_a_new_payload() {
    let mut book = book();
    let n1 = member("n1");
    let [ack] = submit(&mut book, vec![spec("echo")])[..] else {
        panic!()
    };
    let first = assign(&mut book, &n1, "echo", 1);
    book.apply(Command::Report {
        member: n1.clone(),
        report: report(&first[0], failure(FailureKind::Fatal)),
        now: at(3),
    });
    assert_eq!(book.view(ack.id).unwrap().state, TaskState::Dead);

    let fixed = JsonText::parse("{\"n\":2}").unwrap();
    let Applied { answer, effects } = book.retry_dead(ack.id, Some(fixed.clone()), at(4));
    assert_eq!(answer, RetryOutcome::Retried);
    assert!(matches!(
        effects.as_slice(),
        [Effect::Requeued {
            reason: RequeueReason::DeadLetterRetry,
            ..
        }]
    ));
    let again = assign(&mut book, &n1, "echo", 1);
    assert_eq!(again[0].payload, fixed);
    assert_eq!(again[0].attempt, 1);
    book.check_invariants();
}

#[test]
fn a_task_that_crashes_two_workers_is_poison() {
    let mut book = book();
    let n1 = member("n1");
    let [ack] = submit(&mut book, vec![spec("echo")])[..] else {
        panic!()
    };
    for _ in 0..2 {
        book.apply(Command::Tick { now: at(100) });
        let attempt = assign(&mut book, &n1, "echo", 1);
        book.apply(Command::Report {
            member: n1.clone(),
            report: report(&attempt[0], failure(FailureKind::Crash)),
            now: at(5),
        });
    }
    let view = book.view(ack.id).unwrap();
    assert_eq!(view.state, TaskState::Dead);
    assert!(
        view.error
            .unwrap()
            .message
            .starts_with("poison task: it crashed 2 workers")
    );
}

#[test]
fn losing_a_node_requeues_its_tasks_at_once_and_fences_its_late_reports() {
    let mut book = book();
    let (n1, n2) = (member("n1"), member("n2"));
    let acks = submit(&mut book, vec![spec("echo"), spec("echo"), spec("sleep")]);
    let on_n1 = assign(&mut book, &n1, "echo", 2);
    let on_n2 = assign(&mut book, &n2, "sleep", 1);
    let effects = book.apply(Command::MemberLost {
        member: n1.clone(),
        now: at(5),
    });
    let requeued: HashSet<TaskId> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::Requeued {
                id,
                reason: RequeueReason::MemberLost,
            } => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(requeued, HashSet::from([acks[0].id, acks[1].id]));
    assert_eq!(
        book.view(on_n2[0].task_id).unwrap().state,
        TaskState::Running
    );

    // Re-run on n2; then n1's late report arrives and is fenced.
    let retried = assign(&mut book, &n2, "echo", 2);
    assert_eq!(retried.len(), 2);
    assert!(retried.iter().all(|a| a.attempt == 2));
    let effects = book.apply(Command::Report {
        member: n1.clone(),
        report: report(&on_n1[0], success()),
        now: at(6),
    });
    assert!(matches!(
        effects.as_slice(),
        [Effect::StaleReport {
            reason: StaleReason::Duplicate,
            ..
        }]
    ));
    assert_eq!(
        book.view(on_n1[0].task_id).unwrap().state,
        TaskState::Running
    );
    for assignment in retried {
        book.apply(Command::Report {
            member: n2.clone(),
            report: report(&assignment, success()),
            now: at(7),
        });
    }
    assert_eq!(book.counts().succeeded, 2);
    book.check_invariants();
}

#[test]
fn handed_back_attempts_do_not_count() {
    let mut book = book();
    let n1 = member("n1");
    let [ack] = submit(&mut book, vec![spec("echo")])[..] else {
        panic!()
    };
    let attempt = assign(&mut book, &n1, "echo", 1);
    book.apply(Command::HandBack {
        member: n1.clone(),
        attempts: vec![(ack.id, attempt[0].epoch)],
        now: at(2),
    });
    let view = book.view(ack.id).unwrap();
    assert_eq!((view.state, view.attempts), (TaskState::Pending, 0));
    book.check_invariants();
}

#[test]
fn cancelling_pending_running_and_finished_tasks() {
    let mut book = book();
    let n1 = member("n1");
    let acks = submit(&mut book, vec![spec("echo"), spec("echo")]);
    let running = assign(&mut book, &n1, "echo", 1);
    let pending_id = acks[1].id;

    let Applied { answer, effects } = book.cancel(pending_id, at(2));
    assert_eq!(answer, CancelOutcome::Cancelled);
    assert!(matches!(
        effects.as_slice(),
        [Effect::StateChanged {
            state: TaskState::Cancelled,
            ..
        }]
    ));
    assert_eq!(book.queue_depth(&AgentType::new("echo")), 0);
    assert!(
        assign(&mut book, &n1, "echo", 5).is_empty(),
        "a cancelled task is never assigned"
    );

    let Applied { answer, effects } = book.cancel(running[0].task_id, at(3));
    assert_eq!(answer, CancelOutcome::Cancelled);
    assert!(
        matches!(effects.first(), Some(Effect::StopAttempt { epoch, .. }) if *epoch == running[0].epoch)
    );
    let effects = book.apply(Command::Report {
        member: n1,
        report: report(&running[0], success()),
        now: at(4),
    });
    assert!(matches!(
        effects.as_slice(),
        [Effect::StaleReport {
            reason: StaleReason::Cancelled,
            ..
        }]
    ));
    assert_eq!(
        book.view(running[0].task_id).unwrap().state,
        TaskState::Cancelled
    );

    let Applied { answer, effects } = book.cancel(pending_id, at(5));
    assert_eq!(answer, CancelOutcome::AlreadyFinished(TaskState::Cancelled));
    assert!(effects.is_empty(), "{effects:?}");
    book.check_invariants();
}

#[test]
fn retention_forgets_the_oldest_finished_tasks_but_totals_keep_counting() {
    let mut book = book_with(TaskBookSettings {
        retain_finished: 2,
        retry: RetryPolicy::immediate(),
        ..TaskBookSettings::default()
    });
    let n1 = member("n1");
    let acks = submit(&mut book, vec![spec("echo"), spec("echo"), spec("echo")]);
    for assignment in assign(&mut book, &n1, "echo", 3) {
        book.apply(Command::Report {
            member: n1.clone(),
            report: report(&assignment, success()),
            now: at(2),
        });
    }
    assert!(book.view(acks[0].id).is_none());
    assert!(book.view(acks[2].id).is_some());
    assert_eq!(book.counts().succeeded, 2);
    assert_eq!(book.totals().succeeded, 3);
    book.check_invariants();
}

#[test]
fn listing_pages_through_tasks_in_creation_order() {
    let mut book = book();
    let acks = submit(&mut book, (0..5).map(|_| spec("echo")).collect());
    submit(&mut book, vec![spec("sleep")]);
    let first = book.list(&TaskQuery {
        limit: 2,
        agent_type: Some(AgentType::new("echo")),
        ..TaskQuery::default()
    });
    assert_eq!(
        first.tasks.iter().map(|t| t.id).collect::<Vec<_>>(),
        vec![acks[0].id, acks[1].id]
    );
    let second = book.list(&TaskQuery {
        limit: 10,
        after: first.next_after,
        agent_type: Some(AgentType::new("echo")),
        ..TaskQuery::default()
    });
    assert_eq!(second.tasks.len(), 3);
    assert_eq!(second.next_after, None);
    let pending = book.list(&TaskQuery {
        limit: 100,
        state: Some(TaskState::Running),
        ..TaskQuery::default()
    });
    assert!(pending.tasks.is_empty());
}

// ---- property tests -------------------------------------------------------

#[derive(Clone, Debug)]
enum Op {
    Submit {
        count: usize,
        agent_type: usize,
        key: Option<u8>,
    },
    Assign {
        member: usize,
        agent_type: usize,
        max: usize,
    },
    Report {
        pick: usize,
        outcome: u8,
    },
    MemberLost {
        member: usize,
    },
    HandBack {
        pick: usize,
    },
    Cancel {
        pick: usize,
    },
    Tick {
        advance_ms: u64,
    },
    RetryDead {
        pick: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1..4usize, 0..2usize, proptest::option::of(0..4u8)).prop_map(|(count, agent_type, key)| Op::Submit { count, agent_type, key }),
        3 => (0..3usize, 0..2usize, 0..4usize).prop_map(|(member, agent_type, max)| Op::Assign { member, agent_type, max }),
        4 => (any::<usize>(), 0..6u8).prop_map(|(pick, outcome)| Op::Report { pick, outcome }),
        1 => (0..3usize).prop_map(|member| Op::MemberLost { member }),
        1 => any::<usize>().prop_map(|pick| Op::HandBack { pick }),
        1 => any::<usize>().prop_map(|pick| Op::Cancel { pick }),
        2 => (0..3000u64).prop_map(|advance_ms| Op::Tick { advance_ms }),
        1 => any::<usize>().prop_map(|pick| Op::RetryDead { pick }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Under any sequence of submits, assigns, reports (current or stale),
    /// node losses, hand-backs, cancels, ticks and dead-letter retries:
    /// no accepted task disappears, none completes twice, stale reports never
    /// change a task, and the book's indexes stay consistent.
    #[test]
    fn no_task_is_lost_or_completed_twice(ops in proptest::collection::vec(op(), 1..120)) {
        let members = [member("n1"), member("n2"), member("n3")];
        let types = ["echo", "sleep"];
        let mut book = book_with(TaskBookSettings { retry: max_attempts_guard(), ..TaskBookSettings::default() });
        let mut now = 0u64;
        let mut accepted: HashSet<TaskId> = HashSet::new();
        let mut dispatched: Vec<(MemberId, TaskAssignment)> = Vec::new();
        let mut succeeded: HashMap<TaskId, usize> = HashMap::new();

        for op in ops {
            now += 1;
            let time = at(now);
            let command = match op {
                Op::Submit { count, agent_type, key } => {
                    let tasks = (0..count).map(|_| {
                        let mut spec = spec(types[agent_type]);
                        spec.idempotency_key = key.map(|k| format!("key-{k}"));
                        spec.max_attempts = Some(3);
                        (TaskId::new_v7(), spec)
                    }).collect();
                    Command::Submit(book.validate_submission(tasks, time).expect("the property test submits only valid batches"))
                }
                Op::Assign { member, agent_type, max } => Command::Assign { member: members[member].clone(), agent_type: AgentType::new(types[agent_type]), max, now: time },
                Op::Report { pick, outcome } => {
                    if dispatched.is_empty() { continue; }
                    let (who, assignment) = dispatched[pick % dispatched.len()].clone();
                    let outcome = match outcome {
                        0 | 1 => success(),
                        2 => failure(FailureKind::Retryable),
                        3 => failure(FailureKind::Fatal),
                        4 => failure(FailureKind::Crash),
                        _ => failure(FailureKind::Timeout),
                    };
                    Command::Report { member: who, report: report(&assignment, outcome), now: time }
                }
                Op::MemberLost { member } => Command::MemberLost { member: members[member].clone(), now: time },
                Op::HandBack { pick } => {
                    if dispatched.is_empty() { continue; }
                    let (who, assignment) = dispatched[pick % dispatched.len()].clone();
                    Command::HandBack { member: who, attempts: vec![(assignment.task_id, assignment.epoch)], now: time }
                }
                Op::Cancel { pick } => {
                    let Some(id) = accepted.iter().nth(pick % accepted.len().max(1)).copied() else { continue };
                    Command::Cancel { id, now: time }
                }
                Op::Tick { advance_ms } => { now += advance_ms; Command::Tick { now: at(now) } }
                Op::RetryDead { pick } => {
                    let Some(id) = accepted.iter().nth(pick % accepted.len().max(1)).copied() else { continue };
                    Command::RetryDead { id, payload: None, now: time }
                }
            };
            let before = match &command {
                Command::Report { report, .. } => book.view(report.task_id),
                _ => None,
            };
            let effects = match command.clone() {
                Command::Submit(submission) => {
                    let applied = book.submit(submission);
                    accepted.extend(applied.answer.iter().map(|ack| ack.id));
                    applied.effects
                }
                other => book.apply(other),
            };
            if let Command::Report { report, .. } = &command {
                let latest = dispatched.iter().rev().find(|(_, a)| a.task_id == report.task_id).map(|(_, a)| a.epoch);
                if latest != Some(report.epoch) {
                    prop_assert!(
                        matches!(effects.as_slice(), [Effect::StaleReport { .. }]),
                        "a report from a superseded attempt was applied: {:?}", effects
                    );
                }
            }
            for effect in &effects {
                match effect {
                    Effect::Dispatch { member, assignment } => {
                        prop_assert!(!dispatched.iter().any(|(_, a)| a.epoch == assignment.epoch), "epoch reused");
                        dispatched.push((member.clone(), assignment.clone()));
                    }
                    Effect::StateChanged { id, state: TaskState::Succeeded, .. } => {
                        *succeeded.entry(*id).or_default() += 1;
                    }
                    Effect::StaleReport { id, .. } => {
                        prop_assert_eq!(book.view(*id), before.clone(), "a stale report changed the task");
                    }
                    Effect::Forgotten(_) => prop_assert!(false, "retention is large enough that nothing is forgotten"),
                    _ => {}
                }
            }
            book.check_invariants();
            for id in &accepted {
                prop_assert!(book.view(*id).is_some(), "task {} disappeared", id);
            }
            prop_assert!(succeeded.values().all(|count| *count == 1), "a task completed twice");
            // At most one running attempt per task, and it is the latest dispatched.
            for id in &accepted {
                let view = book.view(*id).unwrap();
                if view.state == TaskState::Running {
                    let latest = dispatched.iter().rev().find(|(_, a)| a.task_id == *id).map(|(_, a)| a.epoch);
                    prop_assert_eq!(Some(book.record(*id).unwrap().epoch), latest);
                }
            }
        }
        let _ = AssignmentEpoch(0);
    }
}

/// Keeps the property test's retry times short so ticks make them due.
fn max_attempts_guard() -> RetryPolicy {
    RetryPolicy {
        backoff: Backoff::Linear {
            delay: Duration::from_millis(500),
        },
        jitter: Duration::from_millis(100),
    }
}

#[test]
fn scaling_overrides_are_kept_as_last_recorded_and_change_no_task() {
    let mut book = book();
    submit(&mut book, vec![spec("echo"), spec("sleep")]);
    let tasks_before = format!("{:?} {:?}", book.counts(), book.totals());
    assert_eq!(book.scaling_overrides(), &ScalingOverrides::default());

    let overrides = ScalingOverrides::example();
    let effects = book.apply(Command::ScalingOverrides(Box::new(overrides.clone())));
    assert!(effects.is_empty(), "{effects:?}");
    assert_eq!(book.scaling_overrides(), &overrides);
    // A state, not a delta: applying it again (a replay) changes nothing,
    // and a later one replaces it whole.
    let _ = book.apply(Command::ScalingOverrides(Box::new(overrides.clone())));
    assert_eq!(book.scaling_overrides(), &overrides);
    let bounds_only = ScalingOverrides {
        weights: None,
        ..overrides.clone()
    };
    let _ = book.apply(Command::ScalingOverrides(Box::new(bounds_only.clone())));
    assert_eq!(book.scaling_overrides(), &bounds_only);
    let _ = book.apply(Command::ScalingOverrides(Box::new(overrides.clone())));

    // A new term's Configure, a restart's reconfigure and the copy a new
    // leader starts from all keep them.
    let configuration = book.configuration();
    let _ = book.apply(Command::Configure(Box::new(configuration.clone())));
    book.reconfigure_to(configuration);
    book.reconfigure_like(&self::book());
    assert_eq!(book.clone().scaling_overrides(), &overrides);
    assert_eq!(
        format!("{:?} {:?}", book.counts(), book.totals()),
        tasks_before
    );
    book.check_invariants();
}

#[test]
fn command_variants_keep_their_positions_so_older_journals_and_logs_decode() {
    // bincode encodes a variant by its position: a variant inserted before
    // another would make every older journal entry and log entry decode as
    // something else. New commands are appended.
    let mut book = book();
    let submission = book
        .validate_submission(vec![(TaskId::new_v7(), spec("echo"))], at(0))
        .unwrap();
    let report = TaskReport {
        task_id: TaskId::new_v7(),
        epoch: AssignmentEpoch(1),
        worker: WorkerId(0),
        outcome: success(),
        started_at: at(1),
        finished_at: at(2),
    };
    let id = TaskId::new_v7();
    let commands = vec![
        Command::Submit(submission),
        Command::Assign {
            member: member("n1"),
            agent_type: AgentType::new("echo"),
            max: 1,
            now: at(0),
        },
        Command::Report {
            member: member("n1"),
            report,
            now: at(0),
        },
        Command::MemberLost {
            member: member("n1"),
            now: at(0),
        },
        Command::AttemptsLost {
            member: member("n1"),
            attempts: vec![(id, AssignmentEpoch(1))],
            now: at(0),
        },
        Command::HandBack {
            member: member("n1"),
            attempts: vec![(id, AssignmentEpoch(1))],
            now: at(0),
        },
        Command::Cancel { id, now: at(0) },
        Command::Tick { now: at(0) },
        Command::RetryDead {
            id,
            payload: None,
            now: at(0),
        },
        Command::Configure(Box::new(book.configuration())),
        Command::ScalingOverrides(Box::new(ScalingOverrides::example())),
    ];
    for (position, command) in commands.into_iter().enumerate() {
        let bytes = herd_protocol::codec::encode(&command).unwrap();
        assert_eq!(usize::from(bytes[0]), position, "{command:?}");
        let decoded: Command = herd_protocol::codec::decode_stored(&bytes).unwrap();
        assert_eq!(format!("{decoded:?}"), format!("{command:?}"));
        let _ = book.apply(decoded);
    }
    // An entry as releases before the last variant wrote it: `Tick` at
    // 1,000,005 ms (position 7, then the time as a varint).
    let old = [7u8, 0xFC, 0x45, 0x42, 0x0F, 0x00];
    let decoded: Command = herd_protocol::codec::decode_stored(&old).unwrap();
    assert!(
        matches!(decoded, Command::Tick { now } if now == at(5)),
        "{decoded:?}"
    );
}
