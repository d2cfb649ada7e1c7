//! Quiet hours: a recipient's daily do-not-disturb window, kept in their local time, and the
//! question the router asks of it — "if now is quiet, when may this notification go out?".
//!
//! The window is wall-clock time, so the answer depends on the recipient's time zone, including
//! the days the clocks change: an end time that falls in a spring-forward gap ends at the first
//! instant after the gap, and one that falls in a fall-back fold ends at the earliest of its two
//! instants that is still ahead.

use chrono::offset::LocalResult;
use chrono::{DateTime, Days, NaiveDateTime, NaiveTime, TimeDelta, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

/// Minutes in a day; window bounds are minutes after local midnight, below this.
const MINUTES_PER_DAY: u16 = 24 * 60;

/// The longest run of non-existent local time to look past. Real zones skip at most a day
/// (Samoa jumped over 30 December 2011); two days leaves room to spare.
const LONGEST_GAP_MINUTES: u32 = 2 * 24 * 60;

/// A daily quiet window in the user's local time, minutes after midnight. `end < start` means
/// the window crosses midnight (22:00–07:00); `start == end` means no quiet hours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietHours {
    pub start_minute: u16,
    pub end_minute: u16,
}

/// Why a quiet window could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuietHoursError {
    #[error(
        "quiet hours {bound} is minute {minute}, which is not a time of day; \
         expected minutes after midnight from 0 (00:00) to 1439 (23:59)"
    )]
    MinuteOutOfRange { bound: &'static str, minute: u16 },
}

impl QuietHours {
    /// A window from `start_minute` (inclusive) to `end_minute` (exclusive), both below 1440.
    pub fn new(start_minute: u16, end_minute: u16) -> Result<Self, QuietHoursError> {
        for (bound, minute) in [("start", start_minute), ("end", end_minute)] {
            if minute >= MINUTES_PER_DAY {
                return Err(QuietHoursError::MinuteOutOfRange { bound, minute });
            }
        }
        Ok(QuietHours {
            start_minute,
            end_minute,
        })
    }

    /// Whether the window crosses local midnight, so it ends on the day after it starts.
    pub fn crosses_midnight(self) -> bool {
        self.end_minute < self.start_minute
    }

    /// Whether a local time of day, in minutes after midnight, is inside the window.
    pub fn contains(self, minute_of_day: u16) -> bool {
        let QuietHours {
            start_minute: start,
            end_minute: end,
        } = self;
        if start <= end {
            (start..end).contains(&minute_of_day)
        } else {
            minute_of_day >= start || minute_of_day < end
        }
    }
}

/// If `at` falls inside the quiet window in time zone `tz`, the first UTC instant at which the
/// window is over; otherwise None.
///
/// A window whose fields were set to minutes of 1440 or more without going through
/// [`QuietHours::new`] describes no time of day and is treated as no quiet hours.
pub fn quiet_until(window: QuietHours, tz: Tz, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if window.start_minute >= MINUTES_PER_DAY || window.end_minute >= MINUTES_PER_DAY {
        return None;
    }
    let local = at.with_timezone(&tz);
    // Seconds are ignored on purpose: 06:59:59 is still inside a window ending at 07:00, and
    // minute precision makes the start inclusive and the end exclusive.
    let minute_of_day = u16::try_from(local.hour() * 60 + local.minute()).ok()?;
    if !window.contains(minute_of_day) {
        return None;
    }

    // The window ends on the local day after `at` only if it crosses midnight and `at` is in
    // its evening half; otherwise it ends later on the same local day.
    let today = local.date_naive();
    let end_day = if window.crosses_midnight() && minute_of_day >= window.start_minute {
        today.checked_add_days(Days::new(1))?
    } else {
        today
    };
    let end_time = NaiveTime::from_hms_opt(
        u32::from(window.end_minute / 60),
        u32::from(window.end_minute % 60),
        0,
    )?;
    let end = end_day.and_time(end_time);

    match tz.from_local_datetime(&end) {
        LocalResult::Single(instant) => Some(instant.to_utc()),
        LocalResult::Ambiguous(first, second) => {
            // The earlier instant, unless `at` is itself in the repeated hour past it: then the
            // wall clock next shows the end time on its second pass.
            let (earlier, later) = if first <= second {
                (first.to_utc(), second.to_utc())
            } else {
                (second.to_utc(), first.to_utc())
            };
            Some(if earlier > at { earlier } else { later })
        }
        LocalResult::None => end_of_gap(tz, end),
    }
}

/// The first real instant after the spring-forward gap that swallows the local time `missing`.
fn end_of_gap(tz: Tz, missing: NaiveDateTime) -> Option<DateTime<Utc>> {
    let exists = |local: NaiveDateTime| earliest(tz.from_local_datetime(&local));

    // Walk forward a minute at a time to the first local minute that exists...
    let mut invalid = missing;
    for _ in 0..LONGEST_GAP_MINUTES {
        let probe = invalid.checked_add_signed(TimeDelta::minutes(1))?;
        if let Some(found) = exists(probe) {
            // ...then narrow to the second, for zones whose offsets are not whole minutes.
            let mut valid = (probe, found);
            while valid.0 - invalid > TimeDelta::seconds(1) {
                let mid = invalid + TimeDelta::seconds((valid.0 - invalid).num_seconds() / 2);
                match exists(mid) {
                    Some(instant) => valid = (mid, instant),
                    None => invalid = mid,
                }
            }
            return Some(valid.1);
        }
        invalid = probe;
    }
    None
}

/// The earliest UTC instant a local time maps to, if it exists at all.
fn earliest(mapped: LocalResult<DateTime<Tz>>) -> Option<DateTime<Utc>> {
    match mapped {
        LocalResult::Single(instant) => Some(instant.to_utc()),
        LocalResult::Ambiguous(first, second) => Some(first.min(second).to_utc()),
        LocalResult::None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::America::New_York;
    use chrono_tz::Europe::Paris;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    fn hm(hour: u16, minute: u16) -> u16 {
        hour * 60 + minute
    }

    fn overnight() -> QuietHours {
        QuietHours::new(hm(22, 0), hm(7, 0)).unwrap()
    }

    #[test]
    fn new_rejects_minutes_past_the_end_of_the_day() {
        assert_eq!(
            QuietHours::new(1440, 0),
            Err(QuietHoursError::MinuteOutOfRange {
                bound: "start",
                minute: 1440
            })
        );
        let err = QuietHours::new(0, 2000).unwrap_err();
        assert_eq!(
            err,
            QuietHoursError::MinuteOutOfRange {
                bound: "end",
                minute: 2000
            }
        );
        assert!(err.to_string().contains("1439"), "{err}");
        assert!(QuietHours::new(1439, 0).is_ok());
    }

    #[test]
    fn contains_honours_inclusive_start_and_exclusive_end() {
        let w = overnight();
        assert!(w.crosses_midnight());
        assert!(w.contains(hm(22, 0)));
        assert!(w.contains(hm(0, 0)));
        assert!(w.contains(hm(6, 59)));
        assert!(!w.contains(hm(7, 0)));
        assert!(!w.contains(hm(21, 59)));
        assert!(!w.contains(hm(12, 0)));

        let lunch = QuietHours::new(hm(13, 0), hm(14, 0)).unwrap();
        assert!(!lunch.crosses_midnight());
        assert!(lunch.contains(hm(13, 0)));
        assert!(!lunch.contains(hm(14, 0)));
        assert!(!lunch.contains(hm(12, 59)));
    }

    #[test]
    fn equal_start_and_end_means_no_quiet_hours() {
        let none = QuietHours::new(hm(9, 0), hm(9, 0)).unwrap();
        for minute in [0, hm(8, 59), hm(9, 0), hm(9, 1), 1439] {
            assert!(!none.contains(minute));
        }
        assert_eq!(quiet_until(none, Paris, utc("2026-01-15T08:00:00Z")), None);
    }

    #[test]
    fn overnight_window_late_evening_ends_next_local_morning() {
        // 23:30 CET on 15 January is 22:30 UTC; 07:00 CET on the 16th is 06:00 UTC.
        assert_eq!(
            quiet_until(overnight(), Paris, utc("2026-01-15T22:30:00Z")),
            Some(utc("2026-01-16T06:00:00Z"))
        );
    }

    #[test]
    fn overnight_window_after_midnight_ends_the_same_local_morning() {
        // 01:00 CET on 16 January is 00:00 UTC.
        assert_eq!(
            quiet_until(overnight(), Paris, utc("2026-01-16T00:00:00Z")),
            Some(utc("2026-01-16T06:00:00Z"))
        );
        // Local midnight itself is inside and belongs to the morning half.
        assert_eq!(
            quiet_until(overnight(), Paris, utc("2026-01-15T23:00:00Z")),
            Some(utc("2026-01-16T06:00:00Z"))
        );
    }

    #[test]
    fn local_date_differs_from_utc_date() {
        // 21:30 EST on 15 January is 02:30 UTC on the 16th: not quiet yet.
        assert_eq!(
            quiet_until(overnight(), New_York, utc("2026-01-16T02:30:00Z")),
            None
        );
        // 23:00 EST on the 15th is 04:00 UTC on the 16th; 07:00 EST on the 16th is 12:00 UTC.
        assert_eq!(
            quiet_until(overnight(), New_York, utc("2026-01-16T04:00:00Z")),
            Some(utc("2026-01-16T12:00:00Z"))
        );
    }

    #[test]
    fn overnight_window_boundaries() {
        // 22:00 CET exactly: quiet (start inclusive).
        assert_eq!(
            quiet_until(overnight(), Paris, utc("2026-01-15T21:00:00Z")),
            Some(utc("2026-01-16T06:00:00Z"))
        );
        // 21:59:59 CET: not yet.
        assert_eq!(
            quiet_until(overnight(), Paris, utc("2026-01-15T20:59:59Z")),
            None
        );
        // 06:59:59 CET: still quiet, for one more second.
        assert_eq!(
            quiet_until(overnight(), Paris, utc("2026-01-16T05:59:59Z")),
            Some(utc("2026-01-16T06:00:00Z"))
        );
        // 07:00 CET exactly: over (end exclusive).
        assert_eq!(
            quiet_until(overnight(), Paris, utc("2026-01-16T06:00:00Z")),
            None
        );
    }

    #[test]
    fn window_within_a_day() {
        let lunch = QuietHours::new(hm(13, 0), hm(14, 0)).unwrap();
        // Summer in Paris is CEST, UTC+2: 13:00 local is 11:00 UTC.
        assert_eq!(
            quiet_until(lunch, Paris, utc("2026-07-01T11:00:00Z")),
            Some(utc("2026-07-01T12:00:00Z"))
        );
        assert_eq!(
            quiet_until(lunch, Paris, utc("2026-07-01T11:59:00Z")),
            Some(utc("2026-07-01T12:00:00Z"))
        );
        assert_eq!(quiet_until(lunch, Paris, utc("2026-07-01T12:00:00Z")), None);
        assert_eq!(quiet_until(lunch, Paris, utc("2026-07-01T10:59:00Z")), None);
        // Late evening is outside a daytime window.
        assert_eq!(quiet_until(lunch, Paris, utc("2026-07-01T21:00:00Z")), None);
    }

    #[test]
    fn eu_spring_forward_end_in_the_gap_uses_the_first_instant_after_it() {
        // On 2026-03-29 Paris jumps from 02:00 CET to 03:00 CEST at 01:00 UTC, so 02:30 does
        // not exist. 23:00 CET on the 28th is 22:00 UTC.
        let window = QuietHours::new(hm(22, 0), hm(2, 30)).unwrap();
        assert_eq!(
            quiet_until(window, Paris, utc("2026-03-28T22:00:00Z")),
            Some(utc("2026-03-29T01:00:00Z"))
        );
        // An end exactly at the start of the gap is also swallowed by it.
        let window = QuietHours::new(hm(22, 0), hm(2, 0)).unwrap();
        assert_eq!(
            quiet_until(window, Paris, utc("2026-03-29T00:30:00Z")),
            Some(utc("2026-03-29T01:00:00Z"))
        );
    }

    #[test]
    fn eu_spring_forward_end_after_the_gap_is_in_summer_time() {
        // 07:00 CEST on 2026-03-29 is 05:00 UTC, an hour earlier in UTC than the day before.
        assert_eq!(
            quiet_until(overnight(), Paris, utc("2026-03-28T22:00:00Z")),
            Some(utc("2026-03-29T05:00:00Z"))
        );
        // A window ending at 03:00, the first local time after the gap.
        let window = QuietHours::new(hm(22, 0), hm(3, 0)).unwrap();
        assert_eq!(
            quiet_until(window, Paris, utc("2026-03-28T22:00:00Z")),
            Some(utc("2026-03-29T01:00:00Z"))
        );
    }

    #[test]
    fn us_spring_forward_end_in_the_gap() {
        // On 2026-03-08 New York jumps from 02:00 EST to 03:00 EDT at 07:00 UTC.
        // 01:00 EST is 06:00 UTC.
        let window = QuietHours::new(hm(22, 0), hm(2, 30)).unwrap();
        assert_eq!(
            quiet_until(window, New_York, utc("2026-03-08T06:00:00Z")),
            Some(utc("2026-03-08T07:00:00Z"))
        );
        // The regular overnight window ends at 07:00 EDT, 11:00 UTC.
        assert_eq!(
            quiet_until(overnight(), New_York, utc("2026-03-08T06:00:00Z")),
            Some(utc("2026-03-08T11:00:00Z"))
        );
    }

    #[test]
    fn us_fall_back_ambiguous_end_uses_the_earlier_instant() {
        // On 2026-11-01 New York goes from 02:00 EDT back to 01:00 EST at 06:00 UTC, so
        // 01:00–02:00 happens twice: 01:30 EDT is 05:30 UTC and 01:30 EST is 06:30 UTC.
        // 23:00 EDT on 31 October is 03:00 UTC.
        let window = QuietHours::new(hm(22, 0), hm(1, 30)).unwrap();
        assert_eq!(
            quiet_until(window, New_York, utc("2026-11-01T03:00:00Z")),
            Some(utc("2026-11-01T05:30:00Z"))
        );
    }

    #[test]
    fn us_fall_back_when_at_is_in_the_repeated_hour() {
        let window = QuietHours::new(hm(22, 0), hm(1, 30)).unwrap();
        // 01:15 EDT (first pass): the earlier 01:30 is still ahead.
        assert_eq!(
            quiet_until(window, New_York, utc("2026-11-01T05:15:00Z")),
            Some(utc("2026-11-01T05:30:00Z"))
        );
        // 01:45 EDT: the window is over.
        assert_eq!(
            quiet_until(window, New_York, utc("2026-11-01T05:45:00Z")),
            None
        );
        // 01:15 EST (second pass): the clock reads inside the window again, and the earlier
        // 01:30 is behind us, so it ends when the clock next shows 01:30.
        assert_eq!(
            quiet_until(window, New_York, utc("2026-11-01T06:15:00Z")),
            Some(utc("2026-11-01T06:30:00Z"))
        );
        // 01:30 EST (second pass): over.
        assert_eq!(
            quiet_until(window, New_York, utc("2026-11-01T06:30:00Z")),
            None
        );
    }

    #[test]
    fn us_fall_back_window_inside_the_repeated_hour() {
        let window = QuietHours::new(hm(1, 0), hm(1, 30)).unwrap();
        // 01:00 EDT is 05:00 UTC.
        assert_eq!(
            quiet_until(window, New_York, utc("2026-11-01T05:00:00Z")),
            Some(utc("2026-11-01T05:30:00Z"))
        );
        // 01:00 EST is 06:00 UTC.
        assert_eq!(
            quiet_until(window, New_York, utc("2026-11-01T06:00:00Z")),
            Some(utc("2026-11-01T06:30:00Z"))
        );
    }

    #[test]
    fn us_fall_back_end_after_the_fold_is_in_standard_time() {
        // 07:00 EST on 2026-11-01 is 12:00 UTC (the day before, 07:00 EDT was 11:00 UTC).
        assert_eq!(
            quiet_until(overnight(), New_York, utc("2026-11-01T03:00:00Z")),
            Some(utc("2026-11-01T12:00:00Z"))
        );
        // A minute in the repeated hour, second pass (01:10 EST, 06:10 UTC).
        assert_eq!(
            quiet_until(overnight(), New_York, utc("2026-11-01T06:10:00Z")),
            Some(utc("2026-11-01T12:00:00Z"))
        );
    }

    #[test]
    fn eu_fall_back_ambiguous_end() {
        // On 2026-10-25 Paris goes from 03:00 CEST back to 02:00 CET at 01:00 UTC; 02:30 CEST
        // is 00:30 UTC and 02:30 CET is 01:30 UTC. 23:00 CEST on the 24th is 21:00 UTC.
        let window = QuietHours::new(hm(22, 0), hm(2, 30)).unwrap();
        assert_eq!(
            quiet_until(window, Paris, utc("2026-10-24T21:00:00Z")),
            Some(utc("2026-10-25T00:30:00Z"))
        );
        // 02:10 CET, second pass (01:10 UTC).
        assert_eq!(
            quiet_until(window, Paris, utc("2026-10-25T01:10:00Z")),
            Some(utc("2026-10-25T01:30:00Z"))
        );
    }

    #[test]
    fn a_whole_skipped_day_ends_at_the_first_instant_after_it() {
        // Samoa skipped 30 December 2011, going from 23:59:59 on the 29th (UTC-10) straight
        // to 00:00 on the 31st (UTC+14), both 10:00 UTC on the 30th. 23:00 on the 29th is
        // 09:00 UTC on the 30th, and 07:00 on the 30th never happened.
        let apia = chrono_tz::Pacific::Apia;
        assert_eq!(
            quiet_until(overnight(), apia, utc("2011-12-30T09:00:00Z")),
            Some(utc("2011-12-30T10:00:00Z"))
        );
    }

    #[test]
    fn fields_set_out_of_range_without_new_mean_no_quiet_hours() {
        let broken = QuietHours {
            start_minute: 1500,
            end_minute: hm(7, 0),
        };
        assert_eq!(
            quiet_until(broken, Paris, utc("2026-01-16T00:00:00Z")),
            None
        );
    }

    #[test]
    fn end_of_gap_finds_the_transition_instant() {
        let missing =
            NaiveDateTime::parse_from_str("2026-03-29 02:00:00", "%Y-%m-%d %H:%M:%S").unwrap();
        assert_eq!(
            end_of_gap(Paris, missing),
            Some(utc("2026-03-29T01:00:00Z"))
        );
        let missing =
            NaiveDateTime::parse_from_str("2026-03-08 02:59:59", "%Y-%m-%d %H:%M:%S").unwrap();
        assert_eq!(
            end_of_gap(New_York, missing),
            Some(utc("2026-03-08T07:00:00Z"))
        );
    }
}
