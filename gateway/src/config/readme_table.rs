//! The README's `serve` options table and the clap schema stay in step: every option of
//! `serve --help` has a row, every row is an option, and a default clap shows is the default the
//! row states (sizes may be written as `16 MiB`, `1 GiB`).

use clap::CommandFactory;

use super::Cli;

const README: &str = include_str!("../../../README.md");

/// (option, default column) for each row of the table under `### Command line`.
fn table_rows() -> Vec<(String, String)> {
    let section = README
        .split("### Command line")
        .nth(1)
        .and_then(|s| s.split("\n### ").next())
        .unwrap_or("");
    section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .filter_map(|l| {
            let mut cells = l.split(" | ");
            let first = cells.next()?.trim_start_matches("| ");
            let default = cells.next()?.to_string();
            // `--bind ADDR` (repeatable) → --bind; `APP` rows are positional.
            let option = first.trim_start_matches('`').split([' ', '`']).next()?;
            option
                .starts_with("--")
                .then(|| (option.to_string(), default))
        })
        .collect()
}

/// `16 MiB` → 16777216; other text as it is (numbers and words compare as text).
fn normalise(text: &str) -> String {
    let text = text
        .split(" (")
        .next()
        .unwrap_or(text)
        .trim()
        .trim_matches('`');
    let mut words = text.split(' ');
    let (Some(n), Some(unit), None) = (words.next(), words.next(), words.next()) else {
        return text.to_string();
    };
    let shift = match unit {
        "KiB" => 10,
        "MiB" => 20,
        "GiB" => 30,
        _ => return text.to_string(),
    };
    n.parse::<u64>()
        .map(|n| (n << shift).to_string())
        .unwrap_or_else(|_| text.to_string())
}

#[test]
fn the_readme_options_table_is_serves_schema() {
    let rows = table_rows();
    assert!(rows.len() > 30, "the table was not found: {rows:?}");
    let command = Cli::command();
    let serve = command
        .find_subcommand("serve")
        .expect("serve is a subcommand");
    let options: Vec<_> = serve
        .get_arguments()
        .filter_map(|a| Some((format!("--{}", a.get_long()?), a)))
        .filter(|(name, _)| name != "--help")
        .collect();
    for (name, arg) in &options {
        let Some((_, default)) = rows.iter().find(|(o, _)| o == name) else {
            panic!("{name} is an option of `serve` but has no row in the README's table");
        };
        let defaults: Vec<_> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .filter(|v| !v.is_empty())
            .collect();
        if let [clap_default] = defaults.as_slice() {
            assert_eq!(
                normalise(default),
                *clap_default,
                "{name}: the README says {default:?}, --help says {clap_default:?}"
            );
        }
    }
    for (row, _) in &rows {
        assert!(
            options.iter().any(|(name, _)| name == row),
            "the README's table lists {row}, which `serve` does not have"
        );
    }
}

#[test]
fn sizes_are_normalised() {
    assert_eq!(normalise("16 MiB (0 = none)"), "16777216");
    assert_eq!(normalise("1 GiB"), "1073741824");
    assert_eq!(normalise("`info`"), "info");
    assert_eq!(normalise("240 (0 = off)"), "240");
}
