//! Budget windows, aligned to the UTC calendar: a day budget resets at 00:00 UTC, a month
//! budget on the 1st. Each window has a number (its id) and an end.

use crate::Window;

/// One instance of a window: `id` names it in counters, `start`/`end` are Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub id: u64,
    pub start: u64,
    pub end: u64,
}

impl Window {
    /// The span of this window that contains `now` (Unix seconds). Request and session
    /// windows do not roll: one span that never ends.
    pub fn span(self, now: u64) -> Span {
        let fixed = |len: u64| {
            let id = now / len;
            Span { id, start: id * len, end: (id + 1) * len }
        };
        match self {
            Window::Minute => fixed(60),
            Window::Hour => fixed(3_600),
            Window::Day => fixed(86_400),
            Window::Month => {
                let (year, month) = year_month(now / 86_400);
                let id = year * 12 + (month - 1);
                let (next_year, next_month) = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
                Span {
                    id,
                    start: days_from_civil(year, month) * 86_400,
                    end: days_from_civil(next_year, next_month) * 86_400,
                }
            }
            Window::Request | Window::Session => Span { id: 0, start: 0, end: u64::MAX },
        }
    }

    /// Whether counters of this window are kept between requests.
    pub fn is_stored(self) -> bool {
        self != Window::Request
    }
}

/// Year and month (1-12) of a day counted from 1970-01-01 (H. Hinnant's civil calendar
/// algorithm, restricted to dates after 1970).
fn year_month(days: u64) -> (u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month)
}

/// Days from 1970-01-01 to the first of `month` in `year`.
fn days_from_civil(year: u64, month: u64) -> u64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let m = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * m + 2) / 5;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_windows_align_to_utc() {
        // 2026-11-25T13:45:30Z
        let now = 1_795_614_330;
        let day = Window::Day.span(now);
        assert_eq!(day.start % 86_400, 0);
        assert!(day.start <= now && now < day.end);
        assert_eq!(day.end - day.start, 86_400);
        let minute = Window::Minute.span(now);
        assert_eq!((minute.start, minute.end), (now - 30, now + 30));
        assert_eq!(Window::Hour.span(now).start, now - 45 * 60 - 30);
    }

    #[test]
    fn months_follow_the_calendar() {
        // 2026-11-25 lies in November 2026, which starts on 2026-11-01 and has 30 days.
        let now = 1_795_614_330;
        let month = Window::Month.span(now);
        assert_eq!(month.start, 1_793_491_200); // 2026-11-01T00:00:00Z
        assert_eq!(month.end, 1_796_083_200); // 2026-12-01T00:00:00Z
        assert_eq!(month.id, 2026 * 12 + 10);
        // December rolls into the next year; February 2028 has 29 days.
        let december = Window::Month.span(1_796_083_200);
        assert_eq!(december.end, 1_798_761_600); // 2027-01-01
        let february_2028 = Window::Month.span(1_832_976_000); // 2028-02-01
        assert_eq!(february_2028.end - february_2028.start, 29 * 86_400);
        // The last second of a month belongs to it, the next to the next month.
        assert_eq!(Window::Month.span(month.end - 1).id, month.id);
        assert_eq!(Window::Month.span(month.end).id, month.id + 1);
    }

    #[test]
    fn request_and_session_windows_never_roll() {
        assert_eq!(Window::Session.span(5).id, Window::Session.span(5_000_000).id);
        assert!(!Window::Request.is_stored());
    }
}
