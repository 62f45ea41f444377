//! Which unit of work a lane takes next: the plan's units in order (largest tables first, a
//! split table's pieces one after another), and failed tries put back to wait for their
//! time; a ticket per try, so a writer can stop its reader's try and not a later one.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One try at one table, or at one piece of a split table.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Job {
    /// The table's index in the plan.
    pub(crate) index: usize,
    /// The piece, for a split table.
    pub(crate) piece: Option<usize>,
    /// 1 for the first try.
    pub(crate) attempt: u32,
    /// Unique per try, so a writer can tell its reader to stop this try and not another.
    pub(crate) ticket: usize,
}

/// The units still to try: new ones in plan order, and failed ones waiting for a retry.
struct Jobs {
    /// Every unit of work: a table's plan index, and the piece for a split table.
    units: Vec<(usize, Option<usize>)>,
    next: usize,
    retries: Vec<(Job, Instant)>,
    /// Units without a final outcome yet: while any is in flight, a retry may still come.
    unfinished: usize,
    tickets: usize,
}

/// What a reader lane does next.
pub(crate) enum Next {
    Run(Job),
    /// A retry is waiting for its time, or a table in flight may still need one.
    Wait,
    Done,
}

/// The schedule the lanes share.
pub(crate) struct Schedule {
    jobs: Mutex<Jobs>,
}

impl Schedule {
    pub(crate) fn new(units: Vec<(usize, Option<usize>)>) -> Schedule {
        Schedule {
            jobs: Mutex::new(Jobs {
                unfinished: units.len(),
                units,
                next: 0,
                retries: Vec::new(),
                tickets: 0,
            }),
        }
    }

    /// The next unit to try, a retry whose time has come first.
    pub(crate) fn next(&self) -> Next {
        let Ok(mut jobs) = self.jobs.lock() else {
            return Next::Done;
        };
        let now = Instant::now();
        if let Some(ready) = jobs.retries.iter().position(|(_, at)| *at <= now) {
            let (mut job, _) = jobs.retries.remove(ready);
            job.ticket = jobs.tickets;
            jobs.tickets += 1;
            return Next::Run(job);
        }
        if let Some(&(index, piece)) = jobs.units.get(jobs.next) {
            let job = Job {
                index,
                piece,
                attempt: 1,
                ticket: jobs.tickets,
            };
            jobs.next += 1;
            jobs.tickets += 1;
            return Next::Run(job);
        }
        if jobs.unfinished > 0 {
            Next::Wait
        } else {
            Next::Done
        }
    }

    /// Puts a failed try back, to be tried again after `wait`.
    pub(crate) fn retry_later(&self, job: Job, wait: Duration) {
        if let Ok(mut jobs) = self.jobs.lock() {
            let next = Job {
                attempt: job.attempt + 1,
                ..job
            };
            jobs.retries.push((next, Instant::now() + wait));
        }
    }

    /// A unit has its final outcome.
    pub(crate) fn unit_done(&self) {
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.unfinished = jobs.unfinished.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_out_units_then_retries_then_stops() {
        let schedule = Schedule::new(vec![(0, None), (1, Some(0))]);
        let Next::Run(first) = schedule.next() else {
            panic!("a first unit");
        };
        let Next::Run(second) = schedule.next() else {
            panic!("a second unit");
        };
        assert_eq!((second.index, second.piece), (1, Some(0)));
        assert!(matches!(schedule.next(), Next::Wait));
        schedule.retry_later(first, Duration::ZERO);
        let Next::Run(again) = schedule.next() else {
            panic!("the retry");
        };
        assert_eq!((again.index, again.attempt), (0, 2));
        assert_ne!(again.ticket, first.ticket);
        schedule.unit_done();
        schedule.unit_done();
        assert!(matches!(schedule.next(), Next::Done));
    }
}
