//! The list of cases (in one place) and the macro stamping out one test per case.

/// Calls `$callback! { ($($ctx)*) area::case, ... }` with every case of the suite; the
/// callback's path is given in brackets: `__kosh_jobs_cases!([$crate::m] (ctx))`.
///
/// The only list of cases: [`CASES`](crate::testkit::CASES) and
/// [`conformance_tests!`](crate::conformance_tests) are both built from it.
#[doc(hidden)]
#[macro_export]
macro_rules! __kosh_jobs_cases {
    ([$($callback:tt)*] ($($ctx:tt)*)) => {
        $($callback)*! { ($($ctx)*)
            push::payload_round_trip,
            push::ids_unique_across_batches,
            push::run_at_in_past_is_ready,
            push::queues_are_isolated,
            push::batch_push_keeps_order,
            push::batch_across_queues_keeps_order,
            push::invalid_batch_stores_nothing,
            push::empty_job_name_refuses_batch,
            push::get_unknown_is_none,
            trace::trace_context_is_kept_with_the_job,
            trace::invalid_trace_context_refuses_the_batch,
            reserve::priority_then_fifo,
            reserve::reserve_zero_is_empty,
            reserve::reserve_leases_and_counts_attempt,
            reserve::delayed_job_promoted_when_due,
            reserve::concurrent_reservers_never_share_a_job,
            leases::lease_expiry_requeues_and_counts_attempt,
            leases::lease_expiry_past_max_attempts_fails,
            leases::stale_lease_is_refused,
            leases::heartbeat_extends_lease,
            leases::release_does_not_count_attempt,
            leases::release_on_a_later_attempt_keeps_earlier_ones,
            leases::concurrent_recovery_recovers_each_once,
            leases::expired_lease_is_current_until_recovered,
            leases::unstarted_lease_expiry_gives_the_attempt_back,
            leases::unstarted_expiries_are_given_back_a_bounded_number_of_times,
            snooze::snooze_does_not_count_attempt_and_runs_after_delay,
            snooze::snooze_until_now_is_ready,
            snooze::snooze_on_a_later_attempt_keeps_earlier_ones,
            snooze::stale_snooze_is_refused,
            finish::complete_stores_result,
            finish::finish_batch_results_in_order,
            finish::retry_at_is_honoured,
            finish::retry_at_in_past_is_ready,
            finish::max_attempts_keeps_every_error,
            finish::permanent_failure_skips_attempts,
            finish::progress_is_stored_and_carried,
            admin::unique_key_returns_live_job,
            admin::cancel_by_state,
            admin::retry_failed_job,
            admin::retry_unique_conflict,
            queues::counts_by_queue_and_state,
            queues::list_pages_by_id,
            queues::pause_and_resume,
            queues::purge_final_before_cutoff,
            wait::wait_woken_by_push,
            wait::wait_returns_at_until,
            wait::wait_ends_when_scheduled_job_due,
            wait::wait_woken_by_resume,
            wait::wait_woken_by_recovery,
            wait::wait_returns_when_work_is_ready,
            wait::wait_sleeps_until_the_rate_window_opens,
            wait::wait_woken_by_a_freed_slot,
            wait::wait_woken_by_a_freed_group_slot,
            wait::wait_sleeps_until_a_hold_ends,
            wait::wait_sleeps_until_a_group_window_opens,
            wait::paced_worker_recovers_an_abandoned_lease,
            wait::paced_busy_worker_recovers_an_abandoned_lease,
            limits::limits_are_stored_listed_and_validated,
            limits::concurrency_limit_caps_running_jobs,
            limits::rate_limit_holds_in_every_window,
            limits::limits_change_at_run_time,
            groups::group_keys_are_stored_and_validated,
            groups::groups_take_turns,
            groups::a_big_group_cannot_starve_a_small_one,
            groups::group_concurrency_caps_each_group,
            groups::hold_queue_holds_back_until_it_ends,
            groups::group_rate_limits_each_groups_starts,
            groups::groups_are_listed_with_their_limit_state,
            groups::group_rate_windows_are_listed,
            operate::search_matches_filter,
            operate::search_cursor_stable_while_adding,
            operate::search_work_is_bounded,
            operate::search_rejects_bad_filters,
            operate::search_ids_agree_with_search,
            operate::actions_apply_in_their_states,
            operate::action_retry_unique_conflict,
            operate::action_retry_in_bulk,
            operate::action_on_a_full_call_answers_each_id_in_order,
            operate::attempt_history_records_each_attempt,
            operate::throughput_counts_finished_jobs,
            operate::throughput_drops_old_minutes,
            operate::workers_are_listed_until_they_expire,
            operate::counts_report_oldest_ready,
            schedules::schedule_upsert_is_idempotent,
            schedules::schedule_fires_each_tick_once,
            schedules::schedule_fire_is_refused_after_a_change,
            schedules::schedule_overlap_skip_waits_for_the_last_job,
            schedules::schedule_fires_missed_ticks_in_order,
            schedules::schedule_due_list,
            schedules::schedule_pause_and_resume,
            schedules::schedule_jobs_carry_its_group,
        }
    };
}

/// Generates the tests of [`conformance_tests!`](crate::conformance_tests).
#[doc(hidden)]
#[macro_export]
macro_rules! __kosh_jobs_stamp_tests {
    (($krate:tt; $factory:expr; $($skip:ident),*) $($area:ident :: $case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $krate::testkit::run_case_blocking(
                    ::core::stringify!($case),
                    $factory,
                    __KOSH_JOBS_SKIP,
                );
            }
        )*

        /// The cases this backend skips.
        const __KOSH_JOBS_SKIP: &[&str] = &[$(::core::stringify!($skip)),*];

        /// One item per case, so that a misspelt name in `skip` fails to compile.
        #[allow(non_upper_case_globals, dead_code)]
        mod __kosh_jobs_case_names {
            $(pub(super) const $case: () = ();)*
        }
        const _: () = {
            $(let () = __kosh_jobs_case_names::$skip;)*
        };
    };
}

/// Stamps out the backend conformance suite: one `#[test]` per case of
/// [`testkit::CASES`](crate::testkit::CASES), each running on a fresh backend from the
/// factory, on its own two-thread tokio runtime.
///
/// `conformance_tests!(factory)` or `conformance_tests!(factory, skip: [case, ...])`, where
/// `factory` is an expression implementing [`BackendFactory`](crate::testkit::BackendFactory)
/// (evaluated once per test) and the skipped cases are named without their module. Use it
/// once per module: the tests are named after the cases.
///
/// ```
/// use kosh_jobs::{Clock, memory::MemoryBackend};
///
/// kosh_jobs::conformance_tests!(
///     |clock: Clock| async move { MemoryBackend::with_clock(clock) },
///     skip: [wait_woken_by_resume]
/// );
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! conformance_tests {
    ($factory:expr $(,)?) => {
        $crate::conformance_tests!($factory, skip: []);
    };
    ($factory:expr, skip: [$($skip:ident),* $(,)?] $(,)?) => {
        $crate::__kosh_jobs_cases!(
            [$crate::__kosh_jobs_stamp_tests] ($crate; $factory; $($skip),*)
        );
    };
}
