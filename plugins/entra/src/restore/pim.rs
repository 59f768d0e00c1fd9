//! PIM role eligibility schedules (`unifiedRoleEligibilitySchedule`): what the plan and apply
//! of an eligibility share — when it ends, the request that writes it back, and the answer of
//! a tenant without PIM.

use cairn_sdk::prelude::*;
use serde_json::{json, Map, Value};

use super::str_of;

/// The item kind.
pub const KIND: &str = "unifiedRoleEligibilitySchedule";
/// The live schedules.
pub const SCHEDULES: &str = "/v1.0/roleManagement/directory/roleEligibilitySchedules";
/// Where eligibilities are written (`adminAssign`).
pub const REQUESTS: &str = "/v1.0/roleManagement/directory/roleEligibilityScheduleRequests";

/// The current time (WASI clock), Unix seconds.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `YYYY-MM-DDTHH:MM:SS[.fff][Z|±HH:MM]` → Unix seconds.
pub fn parse_iso(s: &str) -> Option<i64> {
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if s.as_bytes().get(10) != Some(&b'T') || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    // Days from the civil date (proleptic Gregorian).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    let mut secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    // An offset after the seconds (and any fraction): the time is local to it.
    let rest = s[19..].trim_start_matches(|c: char| c == '.' || c.is_ascii_digit());
    if let Some(sign) = rest.chars().next().filter(|c| *c == '+' || *c == '-') {
        let oh = rest.get(1..3)?.parse::<i64>().ok()?;
        let om = rest.get(4..6)?.parse::<i64>().ok()?;
        let off = oh * 3600 + om * 60;
        secs -= if sign == '+' { off } else { -off };
    }
    Some(secs)
}

/// An ISO 8601 duration (`P90D`, `PT8H`, `P1Y2M3W4DT5H6M7S`) in seconds; years count 365 days
/// and months 30 (PIM's durations are days and hours in practice).
pub fn parse_duration(s: &str) -> Option<i64> {
    let body = s.strip_prefix('P')?;
    if body.is_empty() {
        return None;
    }
    let (date, time) = body.split_once('T').unwrap_or((body, ""));
    let mut total = 0i64;
    for (part, units) in [
        (
            date,
            &[
                ('Y', 365 * 86_400),
                ('M', 30 * 86_400),
                ('W', 7 * 86_400),
                ('D', 86_400),
            ][..],
        ),
        (time, &[('H', 3600), ('M', 60), ('S', 1)][..]),
    ] {
        let mut n = String::new();
        for c in part.chars() {
            if c.is_ascii_digit() || c == '.' {
                n.push(c);
                continue;
            }
            let unit = units.iter().find(|(u, _)| *u == c)?.1;
            let v: f64 = n.parse().ok()?;
            total += (v * unit as f64) as i64;
            n.clear();
        }
        if !n.is_empty() {
            return None;
        }
    }
    Some(total)
}

/// When a backed-up eligibility ends (Unix seconds), from its `scheduleInfo`; `None` when it
/// never does (or the dates cannot be read: it is then treated as in force).
pub fn end_of(body: &Value) -> Option<i64> {
    let exp = body.pointer("/scheduleInfo/expiration")?;
    match str_of(exp, "type")? {
        "afterDateTime" => str_of(exp, "endDateTime").and_then(parse_iso),
        "afterDuration" => {
            let start = body
                .pointer("/scheduleInfo/startDateTime")
                .and_then(Value::as_str)
                .and_then(parse_iso)?;
            Some(start + parse_duration(str_of(exp, "duration")?)?)
        }
        _ => None,
    }
}

/// The end time, when the eligibility has expired by `now`.
pub fn expired_at(body: &Value, now: i64) -> Option<String> {
    let end = end_of(body)?;
    (end <= now).then(|| {
        body.pointer("/scheduleInfo/expiration/endDateTime")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| format!("{end} (Unix time)"))
    })
}

/// The backed-up period, in words for the plan.
pub fn period(body: &Value) -> String {
    let exp = body.pointer("/scheduleInfo/expiration");
    let field = |k: &str| exp.and_then(|e| str_of(e, k));
    match field("type") {
        Some("afterDateTime") => format!("until {}", field("endDateTime").unwrap_or("?")),
        Some("afterDuration") => format!("for {}", field("duration").unwrap_or("?")),
        _ => "permanently eligible".into(),
    }
}

/// The `scheduleInfo` of the `adminAssign` request: the backed-up start and expiration.
pub fn schedule_info(body: &Value) -> Value {
    let mut out = Map::new();
    if let Some(s) = body
        .pointer("/scheduleInfo/startDateTime")
        .and_then(Value::as_str)
    {
        out.insert("startDateTime".into(), json!(s));
    }
    let exp = body.pointer("/scheduleInfo/expiration");
    let ty = exp
        .and_then(|e| str_of(e, "type"))
        .unwrap_or("noExpiration");
    let mut e = Map::new();
    e.insert("type".into(), json!(ty));
    for k in ["endDateTime", "duration"] {
        if let Some(v) = exp.and_then(|x| x.get(k)).filter(|v| !v.is_null()) {
            e.insert(k.into(), v.clone());
        }
    }
    out.insert("expiration".into(), Value::Object(e));
    Value::Object(out)
}

/// The Cairn restore's justification, naming the snapshot item (and the snapshot's time when
/// the request carries it).
pub fn justification(id: &str, snapshot_time: Option<&str>) -> String {
    match snapshot_time {
        Some(t) => format!("Cairn restore of PIM eligibility {id} from the snapshot of {t}"),
        None => format!("Cairn restore of PIM eligibility {id} from a snapshot"),
    }
}

/// Whether Graph said the tenant has no licence for PIM (400 `AadPremiumLicenseRequired`).
pub fn unlicensed(e: &PluginError) -> bool {
    matches!(e, PluginError::Graph(g) if g.code.to_ascii_lowercase().contains("license"))
}

/// Whether Graph refused an `adminAssign` because the eligibility exists.
pub fn exists(e: &PluginError) -> bool {
    matches!(e, PluginError::Graph(g) if g.code == "RoleAssignmentExists")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_durations() {
        assert_eq!(parse_iso("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_iso("2025-01-01T00:00:00Z"), Some(1_735_689_600));
        assert_eq!(
            parse_iso("2025-01-01T00:00:00.1234567Z"),
            Some(1_735_689_600)
        );
        assert_eq!(parse_iso("2025-01-01T02:00:00+02:00"), Some(1_735_689_600));
        assert_eq!(parse_iso("2025-01-01"), None);
        assert_eq!(parse_duration("P90D"), Some(90 * 86_400));
        assert_eq!(parse_duration("PT8H"), Some(8 * 3600));
        assert_eq!(parse_duration("P1DT1H1M1S"), Some(86_400 + 3661));
        assert_eq!(parse_duration("P"), None);
        assert_eq!(parse_duration("P5"), None);
        assert_eq!(parse_duration("90D"), None);
    }

    #[test]
    fn expiry() {
        let at = |ty: &str, end: Value, dur: Value| {
            json!({"scheduleInfo": {"startDateTime": "2025-01-01T00:00:00Z",
                "expiration": {"type": ty, "endDateTime": end, "duration": dur}}})
        };
        let now = parse_iso("2026-06-01T00:00:00Z").unwrap();
        let never = at("noExpiration", Value::Null, Value::Null);
        assert_eq!(expired_at(&never, now), None);
        assert_eq!(period(&never), "permanently eligible");
        let past = at("afterDateTime", json!("2026-01-01T00:00:00Z"), Value::Null);
        assert_eq!(
            expired_at(&past, now).as_deref(),
            Some("2026-01-01T00:00:00Z")
        );
        assert_eq!(period(&past), "until 2026-01-01T00:00:00Z");
        let future = at("afterDateTime", json!("2030-01-01T00:00:00Z"), Value::Null);
        assert_eq!(expired_at(&future, now), None);
        let short = at("afterDuration", Value::Null, json!("P30D"));
        assert!(expired_at(&short, now).is_some());
        let long = at("afterDuration", Value::Null, json!("P3650D"));
        assert_eq!(expired_at(&long, now), None);
        // The request carries the backed-up period, without the nulls.
        assert_eq!(
            schedule_info(&future),
            json!({"startDateTime": "2025-01-01T00:00:00Z",
                "expiration": {"type": "afterDateTime", "endDateTime": "2030-01-01T00:00:00Z"}})
        );
        assert_eq!(
            schedule_info(&json!({})),
            json!({"expiration": {"type": "noExpiration"}})
        );
    }
}
