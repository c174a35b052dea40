//! Budget windows (UTC day and month): the key suffix, when the window ends and how long
//! its key must live.

/// Days since 1970-01-01 to (year, month 1-12): Howard Hinnant's civil-from-days.
fn civil(days: i64) -> (i64, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, u32::try_from(m).unwrap_or(1))
}

/// (year, month) to days since 1970-01-01 of its first day.
fn days_from_civil(y: i64, m: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A budget window: the key suffix and its end (Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// `d20612` (days since the epoch) or `m2026-12`.
    pub suffix: String,
    /// First second after the window.
    pub end_s: u64,
}

/// The UTC day holding `now_s`.
pub fn day(now_s: u64) -> Window {
    let d = now_s / 86_400;
    Window {
        suffix: format!("d{d}"),
        end_s: (d + 1) * 86_400,
    }
}

/// The UTC month holding `now_s`.
pub fn month(now_s: u64) -> Window {
    let days = i64::try_from(now_s / 86_400).unwrap_or(0);
    let (y, m) = civil(days);
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    let end = days_from_civil(ny, nm) * 86_400;
    Window {
        suffix: format!("m{y}-{m:02}"),
        end_s: u64::try_from(end).unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_end_at_utc_midnight_and_month_end() {
        // 2026-12-07T12:00:00Z
        let t = 1_796_644_800;
        assert_eq!(day(t).end_s, 1_796_688_000);
        let m = month(t);
        assert_eq!(m.suffix, "m2026-12");
        // 2027-01-01T00:00:00Z
        assert_eq!(m.end_s, 1_798_761_600);
        assert_eq!(month(1_798_761_600).suffix, "m2027-01");
        // 2024-02-29 is in February of a leap year.
        assert_eq!(month(1_709_164_800).suffix, "m2024-02");
    }
}
