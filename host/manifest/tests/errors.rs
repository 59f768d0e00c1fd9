//! One test per class of manifest error: the right file:line, message and help.

use crate::common;

use cairn_manifest::Severity;
use common::*;

#[test]
fn base_manifest_is_valid() {
    let m = ok(BASE);
    assert!(m.warnings.is_empty(), "{:?}", m.warnings);
}

#[test]
fn rendering_has_location_source_line_caret_and_help() {
    let text = base_with("connection = \"contoso\"", "conection = \"contoso\"");
    let d = only_error(
        &text,
        10,
        "unknown key `conection` in [collectors.entra]",
        "did you mean `connection`?",
    );
    assert_eq!(d.column, 1);
    assert_eq!(
        d.to_string(),
        "cairn.toml:10:1: error: unknown key `conection` in [collectors.entra]\n   \
         10 | conection = \"contoso\"\n      \
         | ^^^^^^^^^\n  \
         help: did you mean `connection`?"
    );
    assert_eq!(
        d.headline(),
        "cairn.toml:10:1: error: unknown key `conection` in [collectors.entra]"
    );
}

#[test]
fn toml_syntax_errors_are_all_reported_with_their_lines() {
    let text = base_with(
        "tenant = \"contoso.onmicrosoft.com\"",
        "tenant = \"contoso.onmicrosoft.com",
    )
    .replace("plugin = \"entra\"", "plugin = entra");
    let ds = errors(&text);
    let a = find(&ds, 4, "");
    assert!(
        a.help.as_deref().unwrap_or("").contains("close the string"),
        "{a}"
    );
    let b = find(&ds, 9, "quoted");
    assert!(
        b.help
            .as_deref()
            .unwrap_or("")
            .contains("put the value in quotes"),
        "{b}"
    );
    // Nothing else is reported on those lines (no follow-on noise).
    assert_eq!(ds.iter().filter(|d| d.line == 4 || d.line == 9).count(), 2);
}

#[test]
fn a_value_lost_to_a_syntax_error_is_not_blamed_on_line_1() {
    // `tenant = = "…"`: the parser recovers a value without a place in the file; a type error
    // about it at 1:1 would send the operator to the wrong line.
    let text = base_with(
        "tenant = \"contoso.onmicrosoft.com\"",
        "tenant = = \"contoso.onmicrosoft.com\"",
    );
    let ds = errors(&text);
    assert!(ds.iter().all(|d| d.line == 4), "{ds:?}");
    assert!(!ds.is_empty());
}

#[test]
fn duplicate_keys_are_syntax_errors() {
    let text = base_with(
        "plugin = \"entra\"",
        "plugin = \"entra\"\nplugin = \"entra\"",
    );
    let ds = errors(&text);
    let d = find(&ds, 10, "duplicate key");
    assert!(d.help.as_deref().unwrap().contains("only once"));
}

#[test]
fn unknown_keys_in_every_table_get_a_did_you_mean() {
    let cases = [
        (
            "version = 1",
            "version = 1\nallow_inline_secret = true",
            2,
            "allow_inline_secrets",
            "at the top level",
        ),
        (
            "client_id = \"11111111-2222-3333-4444-555555555555\"",
            "client_id = \"11111111-2222-3333-4444-555555555555\"\nclod = \"global\"",
            6,
            "cloud",
            "[connections.contoso]",
        ),
        (
            "plugin = \"entra\"",
            "plugin = \"entra\"\nconcurency = 4",
            10,
            "concurrency",
            "[collectors.entra]",
        ),
        (
            "inputs = [\"entra\"]",
            "inputs = [\"entra\"]\nkey_fle = \"k.json\"",
            17,
            "key_file",
            "[sinks.local]",
        ),
        (
            "connection = \"contoso\"",
            "connection = \"contoso\"\nlimits = { memory_mb = 64, timout_secs = 5 }",
            11,
            "timeout_secs",
            "[collectors.entra.limits]",
        ),
    ];
    for (old, new, line, suggestion, table) in cases {
        let text = base_with(old, new);
        let d = only_error(&text, line, table, &format!("did you mean `{suggestion}`?"));
        assert!(d.message.starts_with("unknown key"), "{d}");
    }
    let text =
        format!("{BASE}\n[retention]\nkeep_dayly = 7\n\n[schedule]\nbakup = \"0 2 * * *\"\n");
    let ds = errors(&text);
    assert_eq!(
        find(&ds, 19, "unknown key `keep_dayly` in [retention]")
            .help
            .as_deref(),
        Some("did you mean `keep_daily`?")
    );
    assert_eq!(
        find(&ds, 22, "unknown key `bakup` in [schedule]")
            .help
            .as_deref(),
        Some("did you mean `backup`?")
    );
}

#[test]
fn misplaced_keys_say_where_they_belong() {
    // A plugin setting written in the collector's own table.
    let text = base_with(
        "connection = \"contoso\"",
        "connection = \"contoso\"\ntypes = [\"users\"]",
    );
    only_error(
        &text,
        11,
        "unknown key `types`",
        "go in [collectors.entra.config]",
    );
    // A connection key in a sink.
    let text = base_with(
        "inputs = [\"entra\"]",
        "inputs = [\"entra\"]\ntenant = \"x.com\"",
    );
    only_error(
        &text,
        17,
        "unknown key `tenant`",
        "belongs in a [connections.<name>] table",
    );
    // A repository option inside the store table.
    let text = format!("{BASE}[sinks.local.store]\nzstd_level = 3\n");
    only_error(
        &text,
        18,
        "`zstd_level` is a repository option",
        "move it up into [sinks.local]",
    );
}

#[test]
fn wrong_types_say_what_was_expected_and_found() {
    let text = base_with("tenant = \"contoso.onmicrosoft.com\"", "tenant = 42");
    let d = only_error(
        &text,
        4,
        "expected a string for `tenant` in [connections.contoso], found an integer",
        "write it in quotes: tenant = \"42\"",
    );
    assert_eq!(d.column, 10);

    let text = base_with(
        "plugin = \"entra\"",
        "plugin = \"entra\"\nconcurrency = \"4\"",
    );
    only_error(
        &text,
        10,
        "expected an integer for `concurrency`",
        "write it without quotes: concurrency = 4",
    );

    let text = base_with("inputs = [\"entra\"]", "inputs = \"entra\"");
    only_error(
        &text,
        16,
        "expected an array of strings for `inputs` in [sinks.local], found a string",
        "inputs = [\"entra\"]",
    );

    let text = base_with("inputs = [\"entra\"]", "inputs = [\"entra\", 3]");
    let ds = errors(&text);
    find(
        &ds,
        16,
        "expected a string for `inputs[1]` in [sinks.local], found an integer",
    );

    let text = base_with("version = 1", "version = 1\nallow_inline_secrets = \"yes\"");
    only_error(
        &text,
        2,
        "expected a boolean for `allow_inline_secrets`",
        "",
    );

    let text = base_with(
        "connection = \"contoso\"",
        "connection = \"contoso\"\nconfig = 5",
    );
    only_error(
        &text,
        11,
        "expected a table for `config` in [collectors.entra], found an integer",
        "[collectors.entra.config]",
    );

    let text = format!("{BASE}\n[retention]\nkeep_daily = 7.5\n");
    only_error(
        &text,
        19,
        "expected an integer for `keep_daily` in [retention], found a float",
        "",
    );
}

#[test]
fn missing_required_keys_point_at_the_table() {
    let text = base_with("tenant = \"contoso.onmicrosoft.com\"", "");
    only_error(
        &text,
        3,
        "missing `tenant` in [connections.contoso]",
        "add tenant = \"contoso.onmicrosoft.com\"",
    );

    let text = base_with("client_secret = \"env:CAIRN_CLIENT_SECRET\"", "");
    only_error(&text, 3, "missing `client_secret`", "certificate_key");

    let text = base_with("plugin = \"entra\"", "");
    only_error(
        &text,
        8,
        "missing `plugin` in [collectors.entra]",
        "add plugin = \"entra\"",
    );

    let text = base_with("connection = \"contoso\"", "");
    only_error(
        &text,
        8,
        "missing `connection` in [collectors.entra]",
        "add connection = \"contoso\"",
    );

    let text = base_with("url = \"/var/backups/cairn\"", "");
    only_error(
        &text,
        12,
        "missing `url` in [sinks.local]",
        "s3://bucket/prefix",
    );

    let text = base_with(&format!("recipients = [\"{R1}\"]"), "");
    only_error(
        &text,
        12,
        "missing `recipients` in [sinks.local]",
        "the age sink encrypts to recipients",
    );

    let text = base_with("version = 1", "");
    let d = only_error(&text, 1, "missing `version`", "add `version = 1`");
    assert_eq!(d.to_string(), "cairn.toml:1:1: error: missing `version`\n  help: add `version = 1` at the top of the manifest");
}

#[test]
fn missing_whole_sections() {
    let ds = errors("version = 1\n");
    find(&ds, 1, "no [collectors.<name>] table");
    find(&ds, 1, "no [sinks.<name>] table");
    let text: String = BASE.lines().take(10).collect::<Vec<_>>().join("\n");
    only_error(
        &text,
        1,
        "no [sinks.<name>] table: backups would have nowhere to go",
        "[sinks.local]",
    );
}

#[test]
fn certificate_credentials() {
    let text = base_with(
        "client_secret = \"env:CAIRN_CLIENT_SECRET\"",
        "certificate = \"app.crt\"\ncertificate_key = \"file:app.key\"",
    );
    let m = ok(&text);
    let c = &m.connections["contoso"];
    assert_eq!(
        c.credential,
        cairn_manifest::Credential::Certificate {
            cert: cairn_manifest::SecretRef::File("/etc/cairn/app.crt".into()),
            key: cairn_manifest::SecretRef::File("/etc/cairn/app.key".into()),
        }
    );
    let text = base_with(
        "client_secret = \"env:CAIRN_CLIENT_SECRET\"",
        "certificate = \"file:/etc/cairn/app.crt\"",
    );
    only_error(
        &text,
        6,
        "`certificate` in [connections.contoso] has no `certificate_key`",
        "certificate_key = ",
    );
    let text = base_with(
        "client_secret = \"env:CAIRN_CLIENT_SECRET\"",
        "client_secret = \"env:CAIRN_CLIENT_SECRET\"\ncertificate = \"file:/a.crt\"\ncertificate_key = \"env:KEY\"",
    );
    only_error(
        &text,
        7,
        "has both a client secret and a certificate",
        "keep one",
    );
}

#[test]
fn bad_enum_values_list_the_choices() {
    let text = base_with(
        "client_secret = \"env:CAIRN_CLIENT_SECRET\"",
        "client_secret = \"env:CAIRN_CLIENT_SECRET\"\ncloud = \"usgovt\"",
    );
    let d = only_error(&text, 7, "unknown cloud `usgovt`", "did you mean `usgov`?");
    assert!(d.help.unwrap().contains("`usgov-dod`"));
    let text = base_with(
        "client_secret = \"env:CAIRN_CLIENT_SECRET\"",
        "client_secret = \"env:CAIRN_CLIENT_SECRET\"\ncloud = \"GCC High\"",
    );
    only_error(&text, 7, "unknown cloud", "did you mean `usgov`?");
    let text = base_with(
        "client_secret = \"env:CAIRN_CLIENT_SECRET\"",
        "client_secret = \"env:CAIRN_CLIENT_SECRET\"\ncloud = \"mars\"",
    );
    only_error(
        &text,
        7,
        "unknown cloud `mars`",
        "clouds are `global`, `usgov`, `usgov-dod`, `china`",
    );
}

#[test]
fn clouds_resolve_endpoints_and_overrides_win() {
    let text = base_with(
        "client_secret = \"env:CAIRN_CLIENT_SECRET\"",
        "client_secret = \"env:CAIRN_CLIENT_SECRET\"\ncloud = \"usgov-dod\"",
    );
    let c = ok(&text).connections["contoso"].clone();
    assert_eq!(c.cloud, cairn_manifest::Cloud::UsGovDod);
    assert_eq!(c.authority_url, "https://login.microsoftonline.us/");
    assert_eq!(c.graph_url, "https://dod-graph.microsoft.us/");
    assert!(!c.endpoints_overridden);
    let text = base_with(
        "client_secret = \"env:CAIRN_CLIENT_SECRET\"",
        "client_secret = \"env:CAIRN_CLIENT_SECRET\"\nauthority_url = \"http://127.0.0.1:8123\"\ngraph_url = \"http://localhost:8123/graph\"",
    );
    let c = ok(&text).connections["contoso"].clone();
    assert_eq!(c.authority_url, "http://127.0.0.1:8123/");
    assert_eq!(c.graph_url, "http://localhost:8123/graph/");
    assert!(c.endpoints_overridden);
}

#[test]
fn endpoint_urls_are_checked() {
    let add = |line: &str| {
        base_with(
            "client_secret = \"env:CAIRN_CLIENT_SECRET\"",
            &format!("client_secret = \"env:CAIRN_CLIENT_SECRET\"\n{line}"),
        )
    };
    only_error(
        &add("graph_url = \"http://graph.example.com\""),
        7,
        "plain http to a remote host",
        "use https",
    );
    only_error(
        &add("graph_url = \"ftp://x\""),
        7,
        "must be an http(s) URL",
        "https://host",
    );
    only_error(&add("authority_url = \"not a url\""), 7, "is not a URL", "");
    only_error(
        &add("authority_url = \"https://u:p@login.example\""),
        7,
        "must not contain a user name or password",
        "",
    );
}

#[test]
fn tenant_and_client_id_forms() {
    let text = base_with(
        "tenant = \"contoso.onmicrosoft.com\"",
        "tenant = \"contoso\"",
    );
    only_error(
        &text,
        4,
        "is neither a tenant id (GUID) nor a domain",
        "did you mean \"contoso.onmicrosoft.com\"?",
    );
    let text = base_with(
        "tenant = \"contoso.onmicrosoft.com\"",
        "tenant = \"9188040d-6c67-4c5b-b112-36a304b66dad\"",
    );
    ok(&text);
    let text = base_with(
        "client_id = \"11111111-2222-3333-4444-555555555555\"",
        "client_id = \"my-app\"",
    );
    only_error(
        &text,
        5,
        "`client_id` = \"my-app\" is not a GUID",
        "application (client) id",
    );
}

#[test]
fn a_collector_naming_no_connection() {
    let text = base_with("connection = \"contoso\"", "connection = \"contosso\"");
    only_error(
        &text,
        10,
        "collector `entra` names connection `contosso`, which is not defined",
        "did you mean `contoso`?",
    );
    let text = base_with("connection = \"contoso\"", "connection = \"other\"");
    let d = only_error(
        &text,
        10,
        "names connection `other`",
        "connections are `contoso`; or add a [connections.other] table",
    );
    assert_eq!(d.severity, Severity::Error);
}

#[test]
fn sink_inputs_matching_no_collector() {
    let text = base_with("inputs = [\"entra\"]", "inputs = [\"entra\", \"entar\"]");
    only_error(
        &text,
        16,
        "input `entar` of [sinks.local] names no collector",
        "did you mean `entra`?",
    );
    let text = base_with("inputs = [\"entra\"]", "inputs = [\"entra\", \"m365-*\"]");
    let d = only_error(
        &text,
        16,
        "input `m365-*` of [sinks.local] matches no collector",
        "collectors are `entra`",
    );
    assert_eq!(d.column, 20);
    let text = base_with("inputs = [\"entra\"]", "inputs = []");
    only_error(&text, 16, "`inputs` of [sinks.local] is empty", "\"*\"");
}

#[test]
fn globs_select_collectors_and_several_sinks_may_share_inputs() {
    let text = format!(
        "{BASE}\n[collectors.m365-mail]\nplugin = \"m365-mail\"\nconnection = \"contoso\"\n\n\
         [sinks.offsite]\nplugin = \"age-sink\"\nurl = \"s3://bucket-1/cairn\"\nrecipients = [\"{R1}\"]\ninputs = [\"*\"]\n"
    )
    .replace("inputs = [\"entra\"]", "inputs = [\"entra\", \"m365-*\"]");
    let m = ok(&text);
    assert_eq!(m.sinks["local"].collectors, ["entra", "m365-mail"]);
    assert_eq!(m.sinks["offsite"].collectors, ["entra", "m365-mail"]);
    assert_eq!(m.sinks_of("entra").count(), 2);
}

#[test]
fn a_collector_reaching_no_sink() {
    let text =
        format!("{BASE}\n[collectors.mail]\nplugin = \"m365-mail\"\nconnection = \"contoso\"\n");
    only_error(
        &text,
        18,
        "collector `mail` is not an input of any sink",
        "add \"mail\" (or a glob matching it) to `inputs` of a sink, e.g. [sinks.local]",
    );
}

#[test]
fn a_misspelt_input_does_not_also_report_its_collector_unreached() {
    let text = base_with("inputs = [\"entra\"]", "inputs = [\"entr\"]");
    only_error(&text, 16, "names no collector", "did you mean `entra`?");
}

#[test]
fn bad_url_schemes() {
    let text = base_with(
        "url = \"/var/backups/cairn\"",
        "url = \"ftp://host/backups\"",
    );
    only_error(
        &text,
        14,
        "unsupported URL scheme `ftp://` in `url`",
        "s3://bucket/prefix",
    );
    let text = base_with("url = \"/var/backups/cairn\"", "url = \"s3:///prefix\"");
    only_error(&text, 14, "names no bucket", "s3://bucket/prefix");
    let text = base_with(
        "url = \"/var/backups/cairn\"",
        "url = \"file://relative/x\"",
    );
    only_error(&text, 14, "is not a local path URL", "file:///");
    let text = base_with(
        "url = \"/var/backups/cairn\"",
        "url = \"gs://Bad_Bucket!/x\"",
    );
    only_error(&text, 14, "is not a valid bucket name", "lower-case");
}

#[test]
fn store_urls_parse_into_locations() {
    use cairn_manifest::StoreLocation as L;
    let cases = [
        (
            "s3://contoso-backups/cairn/prod/",
            L::S3 {
                bucket: "contoso-backups".into(),
                prefix: "cairn/prod".into(),
            },
        ),
        (
            "az://backups",
            L::Azure {
                container: "backups".into(),
                prefix: String::new(),
            },
        ),
        (
            "azure://backups/x",
            L::Azure {
                container: "backups".into(),
                prefix: "x".into(),
            },
        ),
        (
            "gs://my-bucket/p",
            L::Gcs {
                bucket: "my-bucket".into(),
                prefix: "p".into(),
            },
        ),
        ("file:///srv/cairn", L::Local("/srv/cairn".into())),
        ("repo", L::Local("/etc/cairn/repo".into())),
    ];
    for (url, want) in cases {
        let m = ok(&base_with(
            "url = \"/var/backups/cairn\"",
            &format!("url = \"{url}\""),
        ));
        assert_eq!(m.sinks["local"].location, want, "{url}");
    }
}

#[test]
fn bad_recipients() {
    let text = base_with(
        &format!("recipients = [\"{R1}\"]"),
        "recipients = [\"age1notvalid\"]",
    );
    only_error(
        &text,
        15,
        "malformed age recipient",
        "58 letters and digits",
    );
    let text = base_with(
        &format!("recipients = [\"{R1}\"]"),
        "recipients = [\"ops@example.com\"]",
    );
    only_error(&text, 15, "not an age recipient", "starts with `age1`");
    let text = base_with(
        &format!("recipients = [\"{R1}\"]"),
        "recipients = [\"ssh-ed25519 nope\"]",
    );
    only_error(
        &text,
        15,
        "malformed ssh-ed25519 public key",
        "ssh-ed25519 AAAA",
    );
    let text = base_with(
        &format!("recipients = [\"{R1}\"]"),
        "recipients = [\"ssh-dss AAAAB3NzaC1kc3MAAACBAP\"]",
    );
    only_error(&text, 15, "not supported by age", "ssh-ed25519");
    let ok_text = base_with(
        &format!("recipients = [\"{R1}\"]"),
        &format!("recipients = [\"{R1}\", \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFoo ops@example\", \"ssh-rsa AAAAB3NzaC1yc2EAAAADAQAB\"]"),
    );
    assert_eq!(ok(&ok_text).sinks["local"].recipients.len(), 3);
}

#[test]
fn a_pasted_private_key_is_refused_and_never_shown() {
    let key = "AGE-SECRET-KEY-1QYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQS";
    let text = base_with(
        &format!("recipients = [\"{R1}\"]"),
        &format!("recipients = [\"{key}\"]"),
    );
    let d = only_error(
        &text,
        15,
        "age identity (a private key)",
        "never put a private key",
    );
    let shown = d.to_string();
    assert!(!shown.contains("QYQSZ"), "{shown}");
    assert!(shown.contains("recipients = [***]"), "{shown}");
}

#[test]
fn bad_durations() {
    let text = format!("{BASE}\n[retention]\nkeep_within = \"30 days\"\n");
    only_error(
        &text,
        19,
        "bad duration for `keep_within`",
        "90m, 36h, 30d, 2w, 1y",
    );
    let text = format!("{BASE}\n[retention]\nkeep_within = \"3q\"\n");
    only_error(&text, 19, "unknown unit `q`", "");
}

#[test]
fn bad_cron() {
    let text = format!(
        "{BASE}\n[schedule]\nbackup = \"0 2 * *\"\ncheck = \"0 4 * * 8\"\nprune = \"61 * * * *\"\n"
    );
    let ds = errors(&text);
    assert_eq!(ds.len(), 3, "{ds:?}");
    assert!(find(
        &ds,
        19,
        "bad cron expression for `backup`: a cron expression has 5 fields"
    )
    .help
    .as_deref()
    .unwrap()
    .contains("minute hour day-of-month month day-of-week"));
    find(&ds, 20, "day of week 8 is out of range (0-7)");
    find(&ds, 21, "minute 61 is out of range (0-59)");
}

#[test]
fn retention_and_schedule_parse() {
    let text = format!(
        "{BASE}\n[retention]\nkeep_last = 3\nkeep_daily = 7\nkeep_within = \"1d12h\"\nkeep_tags = [\"legal\"]\n\n\
         [schedule]\nbackup = \"0 2 * * *\"\nprune = \"@weekly\"\n"
    );
    let m = ok(&text);
    let r = m.retention.unwrap();
    assert_eq!(r.keep_last, Some(3));
    assert_eq!(r.keep_daily, Some(7));
    assert_eq!(r.keep_weekly, None);
    assert_eq!(
        r.keep_within,
        Some(std::time::Duration::from_secs(36 * 3600))
    );
    assert_eq!(r.keep_tags, ["legal"]);
    let s = m.schedule.unwrap();
    assert!(s.backup.unwrap().matches(0, 2, 1, 1, 3));
    assert!(s.check.is_none());
    assert_eq!(s.prune.unwrap().as_str(), "@weekly");
}

#[test]
fn an_empty_retention_table_is_a_warning() {
    let text = format!("{BASE}\n[retention]\n");
    let m = ok(&text);
    assert_eq!(m.warnings.len(), 1);
    assert_eq!(m.warnings[0].line, 18);
    assert!(m.warnings[0].message.contains("keeps nothing"));
}

#[test]
fn concurrency_and_limits_out_of_range() {
    let text = base_with("plugin = \"entra\"", "plugin = \"entra\"\nconcurrency = 65");
    let d = only_error(
        &text,
        10,
        "`concurrency` in [collectors.entra] is out of range: 65 is not in 1..=64",
        "use a value from 1 to 64",
    );
    assert_eq!(d.column, 15);
    let text = base_with("plugin = \"entra\"", "plugin = \"entra\"\nconcurrency = 0");
    only_error(&text, 10, "out of range", "1 to 64");
    let text = base_with(
        "plugin = \"entra\"",
        "plugin = \"entra\"\nlimits = { memory_mb = 0 }",
    );
    only_error(
        &text,
        10,
        "`memory_mb` in [collectors.entra.limits] is out of range",
        "1 to 65536",
    );
    let text = base_with(
        "inputs = [\"entra\"]",
        "inputs = [\"entra\"]\nzstd_level = 23",
    );
    only_error(
        &text,
        17,
        "`zstd_level` in [sinks.local] is out of range",
        "1 to 22",
    );
    let m = ok(&base_with("plugin = \"entra\"", "plugin = \"entra\"\nconcurrency = 8\nlimits = { memory_mb = 512, timeout_secs = 30, fuel = 1000000 }"));
    let c = &m.collectors["entra"];
    assert_eq!(c.concurrency, Some(8));
    assert_eq!(c.limits.memory_mb, Some(512));
    assert_eq!(c.limits.timeout_secs, Some(30));
    assert_eq!(c.limits.fuel, Some(1_000_000));
}

#[test]
fn inline_secrets_are_refused_unless_allowed() {
    let secret = "Zx9~very-secret-value";
    let text = base_with(
        "client_secret = \"env:CAIRN_CLIENT_SECRET\"",
        &format!("client_secret = \"{secret}\""),
    );
    let d = only_error(
        &text,
        6,
        "`client_secret` in [connections.contoso] is a secret written inline",
        "client_secret = \"env:CAIRN_CLIENT_SECRET\"",
    );
    assert!(d
        .help
        .as_deref()
        .unwrap()
        .contains("allow_inline_secrets = true"));
    let shown = d.to_string();
    assert!(!shown.contains(secret), "{shown}");
    assert!(shown.contains("client_secret = ***"), "{shown}");

    // A store secret too.
    let text = format!("{BASE}[sinks.local.store]\nsecret_access_key = \"{secret}\"\n");
    let d = only_error(
        &text,
        18,
        "`secret_access_key` in [sinks.local.store] is a secret written inline",
        "env:",
    );
    assert!(!d.to_string().contains(secret));

    // Allowed: the value is kept, as an inline secret, and a warning says so.
    let text = format!(
        "allow_inline_secrets = true\n{}",
        base_with(
            "client_secret = \"env:CAIRN_CLIENT_SECRET\"",
            &format!("client_secret = \"{secret}\"")
        )
    );
    let m = ok(&text);
    match &m.connections["contoso"].credential {
        cairn_manifest::Credential::Secret(cairn_manifest::SecretRef::Inline(s)) => {
            assert_eq!(s.expose(), secret)
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(m.warnings.len(), 1);
    assert!(m.warnings[0].message.contains("inline secrets are allowed"));
    assert!(
        !format!("{m:?}").contains(secret),
        "Debug of the manifest shows the secret"
    );
}

#[test]
fn malformed_references() {
    let text = base_with(
        "client_secret = \"env:CAIRN_CLIENT_SECRET\"",
        "client_secret = \"env:1BAD-NAME\"",
    );
    only_error(
        &text,
        6,
        "`env:1BAD-NAME` does not name an environment variable",
        "env:CAIRN_CLIENT_SECRET",
    );
    let text = base_with(
        "client_secret = \"env:CAIRN_CLIENT_SECRET\"",
        "client_secret = \"file:\"",
    );
    only_error(&text, 6, "`file:` names no file", "file:/path");
    let text = base_with(
        "client_secret = \"env:CAIRN_CLIENT_SECRET\"",
        "client_secret = \"file:secret.txt\"",
    );
    match &ok(&text).connections["contoso"].credential {
        cairn_manifest::Credential::Secret(r) => {
            assert_eq!(
                r,
                &cairn_manifest::SecretRef::File("/etc/cairn/secret.txt".into())
            )
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn unsupported_version() {
    let text = base_with("version = 1", "version = 2");
    let d = only_error(
        &text,
        1,
        "unsupported manifest version 2",
        "a newer cairn is needed for version 2",
    );
    assert_eq!(d.column, 11);
    let text = base_with("version = 1", "version = 0");
    only_error(
        &text,
        1,
        "unsupported manifest version 0",
        "write version = 1",
    );
    let text = base_with("version = 1", "version = \"1\"");
    only_error(
        &text,
        1,
        "expected an integer for `version`",
        "write it without quotes: version = 1",
    );
}

#[test]
fn names_are_restricted() {
    let text = BASE.replace("[collectors.entra]", "[collectors.\"entra ID\"]");
    let ds = errors(&text);
    find(&ds, 8, "`entra ID` is not a valid collector name");
}

#[test]
fn plugin_references() {
    let text = base_with("plugin = \"entra\"", "plugin = \"plugins/custom.wasm\"");
    assert_eq!(
        ok(&text).collectors["entra"].plugin,
        cairn_manifest::PluginRef::File("/etc/cairn/plugins/custom.wasm".into())
    );
    let text = base_with("plugin = \"entra\"", "plugin = \"plugins/custom.so\"");
    only_error(&text, 9, "is a path but not to a .wasm file", ".wasm");
    let text = base_with("plugin = \"entra\"", "plugin = \"Entra ID\"");
    only_error(
        &text,
        9,
        "neither a bundled plugin name nor a .wasm path",
        "cairn plugins list",
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = r#"version = 1
[connections.contoso]
tenant = "contoso"
client_id = "x"
client_secret = "inline!"
cloud = "mars"
[collectors.entra]
plugin = "entra"
conection = "contoso"
concurrency = 99
[sinks.local]
plugin = "age-sink"
url = "ftp://x/y"
recipients = ["age1bad"]
inputs = ["entra", "nothing*"]
[retention]
keep_within = "forever"
[schedule]
backup = "daily"
"#;
    let ds = errors(text);
    let lines: Vec<usize> = ds.iter().map(|d| d.line).collect();
    for line in [3, 4, 5, 6, 9, 10, 13, 14, 15, 17, 19] {
        assert!(
            lines.contains(&line),
            "no diagnostic on line {line}: {lines:?}\n{ds:#?}"
        );
    }
    // Sorted by place.
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(lines, sorted);
    let all = cairn_manifest::Diagnostics(ds).to_string();
    assert!(all.ends_with("errors, 0 warnings"), "{all}");
    assert!(!all.contains("inline!"));
}

#[test]
fn interpolation_only_where_switched_on() {
    // Off: left as is, with a warning pointing at the `${`.
    let text = base_with(
        "url = \"/var/backups/cairn\"",
        "url = \"s3://${BUCKET}/cairn\"",
    );
    let ds = errors(&text);
    // `${BUCKET}` is not a valid bucket name, and the warning explains why.
    let w = find(
        &ds,
        14,
        "is left as is: interpolation is off in [sinks.local]",
    );
    assert_eq!(w.severity, Severity::Warning);
    assert_eq!(w.column, 13);
    assert!(w.help.as_deref().unwrap().contains("interpolate = true"));

    // On: replaced from the environment.
    let text = base_with(
        "url = \"/var/backups/cairn\"",
        "interpolate = true\nurl = \"s3://${BUCKET}/cairn-$${literal}\"",
    );
    let m = ok(&text);
    assert_eq!(
        m.sinks["local"].url,
        "s3://contoso-backups/cairn-${literal}"
    );
    // Only in that table.
    assert_eq!(m.collectors["entra"].connection, "contoso");

    // Defaults.
    let text = base_with(
        "url = \"/var/backups/cairn\"",
        "interpolate = true\nurl = \"${CAIRN_REPO:-/srv/cairn}\"",
    );
    assert_eq!(ok(&text).sinks["local"].url, "/srv/cairn");

    // Missing: an error at the variable, with help.
    let text = base_with(
        "url = \"/var/backups/cairn\"",
        "interpolate = true\nurl = \"s3://${NO_SUCH_VAR}/x\"",
    );
    let d = only_error(
        &text,
        15,
        "environment variable NO_SUCH_VAR is not set (interpolated in [sinks.local])",
        "${NO_SUCH_VAR:-value}",
    );
    assert_eq!(d.column, 13);
    assert_eq!(d.underline, 14);

    // Malformed.
    let text = base_with(
        "url = \"/var/backups/cairn\"",
        "interpolate = true\nurl = \"${BAD NAME}\"",
    );
    only_error(&text, 15, "does not name an environment variable", "$${");
    let text = base_with(
        "url = \"/var/backups/cairn\"",
        "interpolate = true\nurl = \"${BUCKET\"",
    );
    only_error(&text, 15, "unterminated `${`", "");

    // In plugin config, under the owning table's switch.
    let text = base_with("connection = \"contoso\"", "connection = \"contoso\"\ninterpolate = true\n[collectors.entra.config]\nfilter = \"${BUCKET}\"");
    assert_eq!(
        ok(&text).collectors["entra"].config["filter"],
        "contoso-backups"
    );
}

#[test]
fn plugin_config_becomes_json() {
    let text = base_with(
        "connection = \"contoso\"",
        "connection = \"contoso\"\n[collectors.entra.config]\ntypes = [\"users\", \"groups\"]\npage_size = 999\nratio = 0.5\ndeep = { on = true, at = 1979-05-27T07:32:00Z }",
    );
    let c = ok(&text).collectors["entra"].config.clone();
    assert_eq!(
        c,
        serde_json::json!({
            "types": ["users", "groups"],
            "page_size": 999,
            "ratio": 0.5,
            "deep": { "on": true, "at": "1979-05-27T07:32:00Z" }
        })
    );
    let text = base_with(
        "connection = \"contoso\"",
        "connection = \"contoso\"\n[collectors.entra.config]\nx = inf",
    );
    only_error(&text, 12, "JSON has no inf or nan", "");
}

#[test]
fn unknown_store_options_are_warnings_with_did_you_mean() {
    let text = base_with("url = \"/var/backups/cairn\"", "url = \"s3://bucket-1/x\"")
        + "[sinks.local.store]\nregoin = \"eu-west-1\"\nallow_http = true\naws_endpoint = \"http://127.0.0.1:9000\"\n";
    let m = ok(&text);
    assert_eq!(m.warnings.len(), 1, "{:?}", m.warnings);
    assert_eq!(m.warnings[0].line, 18);
    assert_eq!(
        m.warnings[0].help.as_deref(),
        Some("did you mean `region`?")
    );
    let store = &m.sinks["local"].store;
    assert_eq!(
        store["allow_http"],
        cairn_manifest::StoreOption::Value("true".into())
    );
}

#[test]
fn unused_connections_are_warnings() {
    let text = BASE.replace(
        "[collectors.entra]",
        "[connections.spare]\ntenant = \"fabrikam.com\"\nclient_id = \"11111111-2222-3333-4444-555555555555\"\nclient_secret = \"env:X\"\n\n[collectors.entra]",
    );
    let m = ok(&text);
    assert_eq!(m.warnings.len(), 1);
    assert_eq!(m.warnings[0].line, 8);
    assert!(m.warnings[0]
        .message
        .contains("connection `spare` is not used"));
}

#[test]
fn table_shape_mistakes() {
    let text = BASE.replace("[collectors.entra]", "[[collectors]]\nname = \"entra\"");
    let ds = errors(&text);
    let d = find(&ds, 8, "`collectors` must be named tables, found an array");
    assert!(
        d.help.as_deref().unwrap().contains("[collectors.entra]"),
        "{d}"
    );

    let text = BASE.replace("[collectors.entra]", "[collectors]");
    let ds = errors(&text);
    let d = find(
        &ds,
        9,
        "`collectors.plugin` must be a table, found a string",
    );
    assert!(
        d.help
            .as_deref()
            .unwrap()
            .contains("each collector is a named table: write [collectors.<name>]"),
        "{d}"
    );

    let text = base_with("version = 1", "version = 1\ninterpolate = true");
    only_error(
        &text,
        2,
        "unknown key `interpolate` at the top level",
        "it switches on ${NAME} for that table",
    );

    let text = base_with("version = 1", "version = [1]");
    only_error(
        &text,
        1,
        "expected an integer for `version` at the top level, found an array",
        "",
    );
}

#[test]
fn age_sink_recipients_must_not_be_empty_or_doubled() {
    let text = base_with(&format!("recipients = [\"{R1}\"]"), "recipients = []");
    only_error(
        &text,
        15,
        "`recipients` of [sinks.local] is empty: nobody could read the backups",
        "age1",
    );
    let text = format!("{BASE}[sinks.local.config]\nrecipients = [\"{R1}\"]\n");
    only_error(
        &text,
        18,
        "`recipients` is given both in [sinks.local] and in its config",
        "keep the one in [sinks.local]",
    );
}

#[test]
fn diagnostics_serialize_for_json_output() {
    let text = base_with("connection = \"contoso\"", "conection = \"contoso\"");
    let d = parse(&text).unwrap_err();
    let v = serde_json::to_value(&d).unwrap();
    assert_eq!(
        v,
        serde_json::json!([{
            "severity": "error",
            "file": "cairn.toml",
            "line": 10,
            "column": 1,
            "message": "unknown key `conection` in [collectors.entra]",
            "help": "did you mean `connection`?",
            "source_line": "conection = \"contoso\""
        }])
    );
}
