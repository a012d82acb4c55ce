//! Tests of the book's byte accounting and byte budget.

use super::*;

/// A spec whose payload is a JSON string of exactly `bytes` bytes.
fn sized(bytes: usize) -> TaskSpec {
    let text = format!("\"{}\"", "x".repeat(bytes - 2));
    TaskSpec::new("echo", JsonText::parse(text).unwrap())
}

fn sized_result(bytes: usize) -> Outcome {
    Outcome::Succeeded {
        result: JsonText::parse(format!("\"{}\"", "r".repeat(bytes - 2))).unwrap(),
        score: None,
    }
}

fn budget(max_held_bytes: u64) -> TaskBook {
    book_with(TaskBookSettings {
        max_held_bytes,
        retry: RetryPolicy::immediate(),
        ..TaskBookSettings::default()
    })
}

#[test]
fn held_bytes_count_payloads_and_results() {
    let mut book = budget(1_000_000);
    let n1 = member("n1");
    submit(&mut book, vec![sized(100), sized(200)]);
    assert_eq!(book.held_bytes(), 300);
    let assignments = assign(&mut book, &n1, "echo", 1);
    book.apply(Command::Report {
        member: n1.clone(),
        report: report(&assignments[0], sized_result(50)),
        now: at(2),
    });
    assert_eq!(book.held_bytes(), 350);
    assert_eq!(book.unfinished_bytes(), 200);
    book.check_invariants();
}

#[test]
fn a_submission_over_the_byte_budget_is_refused_until_tasks_finish() {
    let mut book = budget(1_000);
    let n1 = member("n1");
    submit(&mut book, vec![sized(600)]);
    let refused = book.validate_submission(vec![(TaskId::new_v7(), sized(500))], at(0));
    assert!(
        matches!(
            refused,
            Err(SubmitRejection::OverByteBudget {
                held_bytes: 600,
                batch_bytes: 500,
                limit: 1_000
            })
        ),
        "{refused:?}"
    );
    let assignments = assign(&mut book, &n1, "echo", 1);
    book.apply(Command::Report {
        member: n1.clone(),
        report: report(&assignments[0], sized_result(10)),
        now: at(2),
    });
    // Finished tasks can be forgotten to make room, so they do not count.
    let submission = book
        .validate_submission(vec![(TaskId::new_v7(), sized(500))], at(3))
        .unwrap();
    let applied = book.submit(submission);
    assert!(matches!(applied.effects[..], [Effect::Forgotten(_)]));
    assert_eq!(book.held_bytes(), 500);
    book.check_invariants();
}

#[test]
fn the_oldest_finished_tasks_are_forgotten_to_stay_under_the_byte_budget() {
    let mut book = budget(1_000);
    let n1 = member("n1");
    let mut acks = Vec::new();
    for _ in 0..5 {
        acks.extend(submit(&mut book, vec![sized(100)]));
        let assignments = assign(&mut book, &n1, "echo", 1);
        book.apply(Command::Report {
            member: n1.clone(),
            report: report(&assignments[0], sized_result(200)),
            now: at(2),
        });
        assert!(book.held_bytes() <= 1_000, "{}", book.held_bytes());
        book.check_invariants();
    }
    // Each finished task holds 300 bytes: three fit, the two oldest went.
    assert_eq!(book.held_bytes(), 900);
    assert!(book.view(acks[0].id).is_none() && book.view(acks[1].id).is_none());
    assert!(book.view(acks[4].id).is_some());
    assert_eq!(book.totals().succeeded, 5);
}

#[test]
fn a_dead_letter_retried_with_a_new_payload_is_recounted() {
    let mut book = budget(1_000_000);
    let n1 = member("n1");
    let mut one = sized(100);
    one.max_attempts = Some(1);
    let [ack] = submit(&mut book, vec![one])[..] else {
        panic!()
    };
    let assignments = assign(&mut book, &n1, "echo", 1);
    book.apply(Command::Report {
        member: n1.clone(),
        report: report(&assignments[0], failure(FailureKind::Fatal)),
        now: at(2),
    });
    assert_eq!(book.view(ack.id).unwrap().state, TaskState::Dead);
    let payload = sized(40).payload;
    let _ = book.retry_dead(ack.id, Some(payload), at(3));
    assert_eq!(book.held_bytes(), 40);
    assert_eq!(book.unfinished_bytes(), 40);
    book.check_invariants();
}

#[test]
fn pages_are_cut_by_bytes_and_a_task_over_the_budget_comes_alone() {
    use herd_protocol::limits::{MIB, PAGE_BYTE_BUDGET};
    let mut book = book_with(TaskBookSettings {
        max_payload_bytes: 9 * MIB,
        ..TaskBookSettings::default()
    });
    // 3 MiB each: two fit in an 8 MiB page, a third would not.
    let acks = submit(&mut book, (0..5).map(|_| sized(3 * MIB)).collect());
    let big = submit(&mut book, vec![sized(PAGE_BYTE_BUDGET + 1)]);
    let mut pages = Vec::new();
    let mut after = None;
    loop {
        let page = book.list(&TaskQuery {
            limit: 1000,
            after,
            ..TaskQuery::default()
        });
        pages.push(page.tasks.iter().map(|t| t.id).collect::<Vec<_>>());
        after = page.next_after;
        if after.is_none() {
            break;
        }
    }
    let ids: Vec<TaskId> = acks.iter().chain(&big).map(|ack| ack.id).collect();
    assert_eq!(pages.concat(), ids);
    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![2, 2, 1, 1]
    );
}

#[test]
fn a_replayed_journal_and_a_loaded_snapshot_hold_the_same_bytes() {
    let mut book = budget(2_000);
    let n1 = member("n1");
    let mut journal = Vec::new();
    for round in 0..6usize {
        let tasks = vec![(TaskId::new_v7(), sized(100 + round * 10))];
        let submission = book.validate_submission(tasks, at(0)).unwrap();
        journal.push(Command::Submit(submission.clone()));
        let _ = book.submit(submission);
        let assign_command = Command::Assign {
            member: n1.clone(),
            agent_type: AgentType::new("echo"),
            max: 1,
            now: at(1),
        };
        journal.push(assign_command.clone());
        let effects = book.apply(assign_command);
        let Some(Effect::Dispatch { assignment, .. }) = effects.first() else {
            panic!("{effects:?}")
        };
        let report_command = Command::Report {
            member: n1.clone(),
            report: report(assignment, sized_result(300)),
            now: at(2),
        };
        journal.push(report_command.clone());
        book.apply(report_command);
    }
    assert!(book.held_bytes() <= 2_000);

    let mut replayed = budget(2_000);
    for command in journal {
        replayed.apply(command);
    }
    assert_eq!(replayed.held_bytes(), book.held_bytes());
    replayed.check_invariants();

    let snapshot = herd_protocol::codec::encode(&book).unwrap();
    let mut loaded: TaskBook = herd_protocol::codec::decode(&snapshot).unwrap();
    loaded.reconfigure_like(&budget(2_000));
    assert_eq!(loaded.held_bytes(), book.held_bytes());
    assert_eq!(loaded.unfinished_bytes(), book.unfinished_bytes());
    loaded.check_invariants();
}
