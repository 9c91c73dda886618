//! Seller settlement (issue 10, seed 003): the business days a statement covers and the
//! commission of one line. Pure: the calendar turns a business day into its bounds in epoch
//! milliseconds and a moment into its business day, and nothing here reads a clock.

use super::error::DomainError;
use super::values::Timestamp;
use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::Timestamp as Instant;
use std::fmt;

/// A calendar day in the settlement time zone: what one statement per partner covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BusinessDate(Date);

impl BusinessDate {
    /// `YYYY-MM-DD`, a real date (no 2026-02-30).
    pub fn parse(field: &'static str, raw: &str) -> Result<BusinessDate, DomainError> {
        let well_formed = raw.len() == 10 && raw.as_bytes().get(4) == Some(&b'-');
        let date = well_formed
            .then(|| raw.parse::<Date>().ok())
            .flatten()
            .ok_or_else(|| DomainError::new(field, "must be a date YYYY-MM-DD"))?;
        Ok(BusinessDate(date))
    }

    /// The next day; saturates at jiff's last date (9999-12-31), which no clock reaches.
    pub fn next(self) -> BusinessDate {
        BusinessDate(self.0.tomorrow().unwrap_or(self.0))
    }

    /// The day before; saturates at jiff's first date.
    pub fn previous(self) -> BusinessDate {
        BusinessDate(self.0.yesterday().unwrap_or(self.0))
    }
}

impl fmt::Display for BusinessDate {
    /// `YYYY-MM-DD`: how the stores keep it, so text order is date order.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.strftime("%Y-%m-%d"))
    }
}

/// When business days begin and end (`settlement_timezone`), and the local time of day the
/// previous day is settled (`settlement_at`).
#[derive(Debug, Clone)]
pub struct SettlementCalendar {
    zone: TimeZone,
    at: Time,
}

impl SettlementCalendar {
    /// An IANA zone name (`Asia/Seoul`) and a local `HH:MM`.
    pub fn new(zone: &str, at: &str) -> Result<SettlementCalendar, DomainError> {
        let zone = TimeZone::get(zone)
            .map_err(|_| DomainError::new("settlement_timezone", "unknown IANA time zone"))?;
        Ok(SettlementCalendar {
            zone,
            at: parse_time_of_day(at)?,
        })
    }

    /// `04:00 Asia/Seoul`: the settlement time and zone.
    pub fn describe(&self) -> String {
        let zone = self.zone.iana_name().unwrap_or("UTC");
        format!("{} {zone}", self.at.strftime("%H:%M"))
    }

    /// `[start of D, start of D+1)` in epoch milliseconds. A day is 23 or 25 hours long
    /// across a DST change; a day starting in a DST gap starts at the first local instant.
    pub fn bounds(&self, date: BusinessDate) -> Result<(Timestamp, Timestamp), DomainError> {
        Ok((self.start_of(date.0)?, self.start_of(date.next().0)?))
    }

    /// The business day `at` falls in.
    pub fn date_of(&self, at: Timestamp) -> Result<BusinessDate, DomainError> {
        Ok(BusinessDate(self.local(at)?.date()))
    }

    /// The latest day that is due at `now`: yesterday once today's settlement time has
    /// passed, the day before until then.
    pub fn latest_due(&self, now: Timestamp) -> Result<BusinessDate, DomainError> {
        let local = self.local(now)?;
        let today = BusinessDate(local.date());
        Ok(if local.time() >= self.at {
            today.previous()
        } else {
            today.previous().previous()
        })
    }

    /// Whether `date` has ended at `now`: a day still running cannot be settled, as a
    /// purchase confirmed later that day would never be paid out.
    pub fn has_ended(&self, date: BusinessDate, now: Timestamp) -> Result<bool, DomainError> {
        Ok(self.start_of(date.next().0)? <= now)
    }

    fn start_of(&self, date: Date) -> Result<Timestamp, DomainError> {
        let start = date
            .to_zoned_datetime(self.zone.clone())
            .map_err(|_| DomainError::new("business_date", "out of range"))?;
        Ok(Timestamp::from_millis(start.timestamp().as_millisecond()))
    }

    fn local(&self, at: Timestamp) -> Result<jiff::ZonedDateTime, DomainError> {
        let instant = Instant::from_millisecond(at.millis())
            .map_err(|_| DomainError::new("timestamp", "out of range"))?;
        Ok(instant.to_zoned_datetime(self.zone.clone()))
    }
}

/// `HH:MM`, 00:00 to 23:59.
pub fn parse_time_of_day(raw: &str) -> Result<Time, DomainError> {
    let invalid = || DomainError::new("settlement_at", "must be a local time HH:MM");
    let (hours, minutes) = raw.split_once(':').ok_or_else(invalid)?;
    if hours.len() != 2 || minutes.len() != 2 {
        return Err(invalid());
    }
    let hours: i8 = hours.parse().map_err(|_| invalid())?;
    let minutes: i8 = minutes.parse().map_err(|_| invalid())?;
    Time::new(hours, minutes, 0, 0).map_err(|_| invalid())
}

/// The commission on one line: `subtotal × rate_bps / 10000`, rounded half up, in integer
/// arithmetic (the stores compute the same in SQL: `(subtotal * bps + 5000) / 10000`).
pub fn commission(subtotal: i64, rate_bps: i64) -> i64 {
    debug_assert!(subtotal >= 0 && (0..=10_000).contains(&rate_bps));
    (subtotal.saturating_mul(rate_bps) + 5_000) / 10_000
}

/// What an entry of the sellers' books records: a purchase confirmed (`sale`), or a
/// confirmed part returned and refunded (`refund`, the sale's amounts negated).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LineKind {
    Sale,
    Refund,
}

impl LineKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LineKind::Sale => "sale",
            LineKind::Refund => "refund",
        }
    }

    pub fn parse(raw: &str) -> Option<LineKind> {
        [LineKind::Sale, LineKind::Refund]
            .into_iter()
            .find(|k| k.as_str() == raw)
    }
}

/// How long the settlement job may catch up in one run, oldest day first; the next run
/// continues where it stopped.
pub const CATCH_UP_MAX_DAYS: usize = 31;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn seoul() -> SettlementCalendar {
        SettlementCalendar::new("Asia/Seoul", "04:00").unwrap()
    }

    fn ms(rfc3339: &str) -> Timestamp {
        Timestamp::parse_rfc3339("t", rfc3339).unwrap()
    }

    #[test]
    fn a_seoul_day_runs_from_15_00_utc_to_15_00_utc() {
        let day = BusinessDate::parse("d", "2026-03-10").unwrap();
        let (from, to) = seoul().bounds(day).unwrap();
        assert_eq!(from, ms("2026-03-09T15:00:00Z"));
        assert_eq!(to, ms("2026-03-10T15:00:00Z"));
        assert_eq!(
            seoul().date_of(ms("2026-03-10T14:59:59.999Z")).unwrap(),
            day
        );
        assert_eq!(
            seoul().date_of(ms("2026-03-10T15:00:00Z")).unwrap(),
            day.next()
        );
    }

    #[test]
    fn a_day_across_a_dst_change_is_23_or_25_hours() {
        let calendar = SettlementCalendar::new("Europe/Berlin", "04:00").unwrap();
        let spring = BusinessDate::parse("d", "2026-03-29").unwrap();
        let (from, to) = calendar.bounds(spring).unwrap();
        assert_eq!(to.millis() - from.millis(), 23 * 3_600_000);
        let autumn = BusinessDate::parse("d", "2026-10-25").unwrap();
        let (from, to) = calendar.bounds(autumn).unwrap();
        assert_eq!(to.millis() - from.millis(), 25 * 3_600_000);
    }

    #[test]
    fn yesterday_is_due_from_the_settlement_time() {
        let calendar = seoul();
        // 03:59 and 04:00 in Seoul on 2026-03-11.
        let before = ms("2026-03-10T18:59:00Z");
        let at = ms("2026-03-10T19:00:00Z");
        assert_eq!(
            calendar.latest_due(before).unwrap().to_string(),
            "2026-03-09"
        );
        assert_eq!(calendar.latest_due(at).unwrap().to_string(), "2026-03-10");
        let day = BusinessDate::parse("d", "2026-03-10").unwrap();
        assert!(!calendar.has_ended(day, ms("2026-03-10T14:59:59Z")).unwrap());
        assert!(calendar.has_ended(day, ms("2026-03-10T15:00:00Z")).unwrap());
    }

    #[test]
    fn dates_and_times_of_day_are_parsed_strictly() {
        for bad in [
            "2026-02-30",
            "2026-3-01",
            "20260301",
            "",
            "2026-03-01T00:00",
        ] {
            assert!(BusinessDate::parse("d", bad).is_err(), "{bad}");
        }
        for bad in ["4:00", "24:00", "04:60", "04-00", ""] {
            assert!(parse_time_of_day(bad).is_err(), "{bad}");
        }
        assert!(SettlementCalendar::new("Mars/Olympus", "04:00").is_err());
        assert_eq!(
            BusinessDate::parse("d", "2026-12-31")
                .unwrap()
                .next()
                .to_string(),
            "2027-01-01"
        );
    }

    #[test]
    fn commission_rounds_half_up() {
        assert_eq!(commission(1_005, 1_000), 101); // 100.5
        assert_eq!(commission(1_004, 1_000), 100); // 100.4
        assert_eq!(commission(15, 3_333), 5); // 4.9995
        assert_eq!(commission(0, 1_000), 0);
        assert_eq!(commission(123_456, 10_000), 123_456);
    }

    proptest! {
        #[test]
        fn commission_is_the_nearest_won(subtotal in 0i64..1_000_000_000_000, bps in 0i64..=10_000) {
            let c = commission(subtotal, bps);
            let exact = subtotal as i128 * bps as i128;
            // Within half a won of the exact amount, and a tie (exactly half) goes up.
            let diff = c as i128 * 10_000 - exact;
            prop_assert!(diff > -5_000 && diff <= 5_000, "{} bps of {}: {}", bps, subtotal, c);
            prop_assert!(c <= subtotal);
        }
    }
}
