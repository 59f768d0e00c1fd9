//! Small value syntaxes: durations, 5-field cron, name globs, GUIDs and domains, recipients.

use std::fmt;
use std::time::Duration;

/// Parses a duration: one or more `<number><unit>` parts, units `s`, `m` (minutes), `h`, `d`,
/// `w` (7 days), `y` (365 days); e.g. `90m`, `36h`, `30d`, `2w`, `1y`, `1d12h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("the duration is empty".into());
    }
    let mut total: u64 = 0;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest.chars().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return Err(format!(
                "`{s}` is not a duration: expected a number at `{rest}`"
            ));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("`{s}`: number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.chars().take_while(|c| c.is_ascii_alphabetic()).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let secs = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            "w" => 7 * 86_400,
            "y" => 365 * 86_400,
            "" => return Err(format!("`{s}` has a number without a unit")),
            other => return Err(format!("`{s}`: unknown unit `{other}`")),
        };
        total = n
            .checked_mul(secs)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("`{s}` is too long"))?;
    }
    Ok(Duration::from_secs(total))
}

/// A validated 5-field cron expression (`minute hour day-of-month month day-of-week`), or one
/// of `@hourly`, `@daily`, `@midnight`, `@weekly`, `@monthly`, `@yearly`, `@annually`.
///
/// Fields take `*`, numbers, ranges `a-b`, steps `*/n` and `a-b/n`, and lists `a,b`; months
/// and days of the week also take names (`jan`, `mon`). Day of week 0 and 7 are Sunday. As in
/// Vixie cron, when both day fields are restricted a day matches if either does.
#[derive(Clone, PartialEq, Eq)]
pub struct Cron {
    expr: String,
    minutes: u64,
    hours: u32,
    days: u32,
    months: u16,
    weekdays: u8,
    days_star: bool,
    weekdays_star: bool,
}

impl fmt::Debug for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cron({:?})", self.expr)
    }
}

impl fmt::Display for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.expr)
    }
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

impl Cron {
    /// Parses and validates an expression.
    pub fn parse(expr: &str) -> Result<Cron, String> {
        let e = expr.trim();
        let expanded = match e {
            "@hourly" => "0 * * * *",
            "@daily" | "@midnight" => "0 0 * * *",
            "@weekly" => "0 0 * * 0",
            "@monthly" => "0 0 1 * *",
            "@yearly" | "@annually" => "0 0 1 1 *",
            other if other.starts_with('@') => {
                return Err(format!(
                "unknown cron macro `{other}` (use @hourly, @daily, @weekly, @monthly or @yearly)"
            ))
            }
            other => other,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(format!(
                "a cron expression has 5 fields (minute hour day-of-month month day-of-week), \
                 `{e}` has {}",
                fields.len()
            ));
        }
        let minutes = field(fields[0], "minute", 0, 59, &[])?;
        let hours = field(fields[1], "hour", 0, 23, &[])?;
        let days = field(fields[2], "day of month", 1, 31, &[])?;
        let months = field(fields[3], "month", 1, 12, &MONTHS)?;
        let mut weekdays = field(fields[4], "day of week", 0, 7, &WEEKDAYS)?;
        if weekdays & (1 << 7) != 0 {
            weekdays |= 1;
        }
        Ok(Cron {
            expr: e.to_string(),
            minutes,
            hours: hours as u32,
            days: days as u32,
            months: (months >> 1) as u16,
            weekdays: (weekdays & 0x7f) as u8,
            days_star: fields[2].starts_with('*'),
            weekdays_star: fields[4].starts_with('*'),
        })
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.expr
    }

    /// Does the schedule fire at this minute? `month` 1–12, `day` 1–31, `weekday` 0–6
    /// (Sunday = 0).
    pub fn matches(&self, minute: u32, hour: u32, day: u32, month: u32, weekday: u32) -> bool {
        let bit = |set: u64, v: u32| v < 64 && set & (1u64 << v) != 0;
        if !bit(self.minutes, minute)
            || !bit(self.hours as u64, hour)
            || !(1..=12).contains(&month)
            || !bit(self.months as u64, month - 1)
        {
            return false;
        }
        let d = bit(self.days as u64, day);
        let w = bit(self.weekdays as u64, weekday);
        match (self.days_star, self.weekdays_star) {
            (true, true) => true,
            (true, false) => w,
            (false, true) => d,
            (false, false) => d || w,
        }
    }
}

fn field(s: &str, what: &str, lo: u32, hi: u32, names: &[&str]) -> Result<u64, String> {
    let value = |v: &str| -> Result<u32, String> {
        if let Ok(n) = v.parse::<u32>() {
            if n < lo || n > hi {
                return Err(format!("{what} {n} is out of range ({lo}-{hi})"));
            }
            return Ok(n);
        }
        let lower = v.to_ascii_lowercase();
        if let Some(i) = names.iter().position(|n| *n == lower) {
            // Months are 1-based, weekdays 0-based.
            return Ok(i as u32 + lo);
        }
        Err(format!("`{v}` is not a valid {what}"))
    };
    let mut set = 0u64;
    for part in s.split(',') {
        if part.is_empty() {
            return Err(format!("empty list element in the {what} field `{s}`"));
        }
        let (range, step) = match part.split_once('/') {
            Some((r, st)) => {
                let st: u32 = st
                    .parse()
                    .map_err(|_| format!("`{st}` is not a step in the {what} field"))?;
                if st == 0 {
                    return Err(format!("a step of 0 in the {what} field"));
                }
                (r, st)
            }
            None => (part, 1),
        };
        let (a, b) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, b) = (value(a)?, value(b)?);
            if a > b {
                return Err(format!("the {what} range {range} is backwards"));
            }
            (a, b)
        } else {
            let a = value(range)?;
            (a, if step > 1 { hi } else { a })
        };
        let mut v = a;
        while v <= b {
            set |= 1 << v;
            v += step;
        }
    }
    Ok(set)
}

/// Does `name` match the glob `pat` (`*` any run of characters, `?` one character)?
pub fn glob_match(pat: &str, name: &str) -> bool {
    let p: Vec<char> = pat.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// Is `s` a glob (has `*` or `?`)?
pub fn is_glob(s: &str) -> bool {
    s.contains(['*', '?'])
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (hex).
pub fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

/// A DNS name with at least two labels.
pub fn is_domain(s: &str) -> bool {
    let labels: Vec<&str> = s.split('.').collect();
    labels.len() >= 2
        && s.len() <= 253
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

const BECH32: &str = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";

/// Checks an age recipient: `age1…` (X25519), `ssh-ed25519 AAAA… [comment]` or
/// `ssh-rsa AAAA… [comment]`. `Err` has the message and the help.
pub fn check_recipient(r: &str) -> Result<(), (String, String)> {
    let r = r.trim();
    if r.starts_with("AGE-SECRET-KEY-") {
        return Err((
            "this is an age identity (a private key), not a recipient".into(),
            "never put a private key in the manifest; write its public recipient \
             (`age-keygen -y key.txt` prints it) and keep the identity offline"
                .into(),
        ));
    }
    if r.starts_with("-----BEGIN") {
        return Err((
            "this is a PEM block (a private key?), not a recipient".into(),
            "write the public key: an age1… recipient or an `ssh-ed25519 AAAA…` line".into(),
        ));
    }
    if let Some(data) = r.strip_prefix("age1") {
        let lower = data.to_ascii_lowercase();
        if lower.len() != 58 || !lower.chars().all(|c| BECH32.contains(c)) {
            return Err((
                "malformed age recipient".into(),
                "an age X25519 recipient is `age1` followed by 58 letters and digits, as printed \
                 by `age-keygen` or `cairn init`"
                    .into(),
            ));
        }
        if data != lower && data != data.to_ascii_uppercase() {
            return Err((
                "malformed age recipient (mixed case)".into(),
                "copy the recipient exactly as `age-keygen` printed it".into(),
            ));
        }
        return Ok(());
    }
    let mut parts = r.split_whitespace();
    let kind = parts.next().unwrap_or("");
    if kind == "ssh-ed25519" || kind == "ssh-rsa" {
        let blob = parts.next().unwrap_or("");
        let b64 = |c: char| c.is_ascii_alphanumeric() || c == '+' || c == '/' || c == '=';
        if !blob.starts_with("AAAA") || blob.len() < 16 || !blob.chars().all(b64) {
            return Err((
                format!("malformed {kind} public key"),
                format!("write the whole line of the .pub file: `{kind} AAAA… comment`"),
            ));
        }
        return Ok(());
    }
    if kind.starts_with("ssh-") || kind.starts_with("ecdsa-") || kind.starts_with("sk-") {
        return Err((
            format!("`{kind}` keys are not supported by age"),
            "use an ssh-ed25519 or ssh-rsa key, or an age1… recipient".into(),
        ));
    }
    Err((
        "not an age recipient".into(),
        "a recipient starts with `age1` (from `age-keygen` or `cairn init`), `ssh-ed25519 ` or \
         `ssh-rsa `"
            .into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90m").unwrap(), Duration::from_secs(5400));
        assert_eq!(
            parse_duration("36h").unwrap(),
            Duration::from_secs(36 * 3600)
        );
        assert_eq!(
            parse_duration("30d").unwrap(),
            Duration::from_secs(30 * 86400)
        );
        assert_eq!(
            parse_duration("2w").unwrap(),
            Duration::from_secs(14 * 86400)
        );
        assert_eq!(
            parse_duration("1y").unwrap(),
            Duration::from_secs(365 * 86400)
        );
        assert_eq!(
            parse_duration("1d12h").unwrap(),
            Duration::from_secs(36 * 3600)
        );
        assert!(parse_duration("30").unwrap_err().contains("without a unit"));
        assert!(parse_duration("3 days").is_err());
        assert!(parse_duration("30x")
            .unwrap_err()
            .contains("unknown unit `x`"));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("99999999999999999999y").is_err());
    }

    #[test]
    fn cron() {
        let c = Cron::parse("0 2 * * *").unwrap();
        assert!(c.matches(0, 2, 15, 6, 3));
        assert!(!c.matches(1, 2, 15, 6, 3));
        let c = Cron::parse("*/15 9-17 * jan-mar mon-fri").unwrap();
        assert!(c.matches(45, 9, 1, 2, 1));
        assert!(!c.matches(44, 9, 1, 2, 1));
        assert!(!c.matches(45, 9, 1, 4, 1));
        assert!(!c.matches(45, 9, 1, 2, 0));
        let c = Cron::parse("0 4 * * 7").unwrap();
        assert!(c.matches(0, 4, 3, 3, 0), "7 is Sunday");
        let c = Cron::parse("0 0 1 * 1").unwrap();
        assert!(c.matches(0, 0, 1, 5, 3) && c.matches(0, 0, 9, 5, 1));
        assert!(Cron::parse("@daily").unwrap().matches(0, 0, 9, 9, 2));
        assert!(Cron::parse("0 2 * *").unwrap_err().contains("5 fields"));
        assert!(Cron::parse("60 2 * * *")
            .unwrap_err()
            .contains("minute 60 is out of range"));
        assert!(Cron::parse("0 24 * * *").unwrap_err().contains("hour 24"));
        assert!(Cron::parse("0 0 0 * *")
            .unwrap_err()
            .contains("day of month 0"));
        assert!(Cron::parse("0 0 * 13 *").is_err());
        assert!(Cron::parse("0 0 * * 8").is_err());
        assert!(Cron::parse("*/0 0 * * *").is_err());
        assert!(Cron::parse("5-1 0 * * *")
            .unwrap_err()
            .contains("backwards"));
        assert!(Cron::parse("0 0 * * funday").is_err());
        assert!(Cron::parse("@sometimes").is_err());
    }

    #[test]
    fn globs() {
        assert!(glob_match("m365-*", "m365-mail"));
        assert!(glob_match("*", "entra"));
        assert!(glob_match("e?tra", "entra"));
        assert!(glob_match("*-links", "sharepoint-links"));
        assert!(!glob_match("m365-*", "entra"));
        assert!(!glob_match("entra", "entra2"));
        assert!(glob_match("a*b*c", "aXXbYYc"));
    }

    #[test]
    fn ids() {
        assert!(is_guid("11111111-2222-3333-4444-555555555555"));
        assert!(!is_guid("11111111-2222-3333-4444-55555555555"));
        assert!(is_domain("contoso.onmicrosoft.com"));
        assert!(!is_domain("contoso"));
        assert!(!is_domain("-a.com"));
    }

    #[test]
    fn recipients() {
        let ok = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";
        assert!(check_recipient(ok).is_ok());
        assert!(check_recipient("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFoo ops@example").is_ok());
        assert!(check_recipient("ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ").is_ok());
        assert!(check_recipient("age1short").is_err());
        assert!(check_recipient("AGE-SECRET-KEY-1XYZ")
            .unwrap_err()
            .0
            .contains("private key"));
        assert!(check_recipient("ecdsa-sha2-nistp256 AAAAE2")
            .unwrap_err()
            .0
            .contains("not supported"));
        assert!(check_recipient("ops@example").is_err());
    }
}
