//! The soak's verdict: the stretches between checkpoints compared, the
//! log's warnings sorted into the faults' windows or not, and the process
//! figures after the warm-up.
use std::{fmt::Write as _, time::Duration};

use super::{
    Checkpoint, FLAT, SCRAPE_EVERY, SERVICE, counts,
    plot::{Figure, Sample},
};

/// Every stretch between checkpoints: exact outside the overflow window;
/// inside it, never more than the tally, and the loss counted.
pub fn compare(checkpoints: &[Checkpoint], report: &mut String, failures: &mut Vec<String>) {
    let _ = writeln!(
        report,
        "\n{:<40} {:>8}  {:>6}  result",
        "stretch (from checkpoint to checkpoint)", "answers", "series"
    );
    for pair in checkpoints.windows(2) {
        let (from, to) = (&pair[0], &pair[1]);
        let got = counts::delta(
            &counts::counted(&to.scrape, SERVICE),
            &counts::counted(&from.scrape, SERVICE),
        );
        let want = counts::delta(&counts::expected(&to.tally), &counts::expected(&from.tally));
        let answers: u64 = to.tally.values().sum::<u64>() - from.tally.values().sum::<u64>();
        let name = format!("{} -> {}", from.name, to.name);
        let result = if to.ends_overflow {
            let lost = to.scrape.get("loupe_events_lost_total", &[])
                - from.scrape.get("loupe_events_lost_total", &[]);
            let over: Vec<String> = counts::differences(&got, &want)
                .into_iter()
                .filter(|(_, g, w)| g > w)
                .map(|(series, g, w)| format!("{series}: {g} > {w}"))
                .collect();
            if lost <= 0.0 {
                failures.push(format!(
                    "{name}: the burst lost nothing: no overflow was forced"
                ));
            }
            for line in &over {
                failures.push(format!("{name}: more than sent: {line}"));
            }
            let counted: f64 = got.values().sum();
            format!(
                "overflow: {lost} records lost; {counted} of {} counted",
                want.values().sum::<f64>()
            )
        } else {
            let differences = counts::differences(&got, &want);
            for (series, g, w) in &differences {
                failures.push(format!("{name}: {series}: loupe {g}, load {w}"));
            }
            if differences.is_empty() {
                "exact".to_owned()
            } else {
                format!("{} series differ", differences.len())
            }
        };
        let _ = writeln!(
            report,
            "{name:<40} {answers:>8}  {:>6}  {result}",
            want.len()
        );
    }
}

/// Warning and error lines of loupe's log outside the faults' windows.
pub fn warnings(
    log: &str,
    windows: &[(u64, u64)],
    report: &mut String,
    failures: &mut Vec<String>,
) {
    let mut offset = 0u64;
    let (mut expected, mut unexpected) = (Vec::new(), 0);
    for line in log.lines() {
        let at = offset;
        offset += line.len() as u64 + 1;
        if !(line.contains(" WARN ") || line.contains(" ERROR ")) {
            continue;
        }
        if windows
            .iter()
            .any(|&(since, until)| at >= since && at < until)
        {
            expected.push(line);
        } else {
            unexpected += 1;
            failures.push(format!("a warning outside the faults: {line}"));
        }
    }
    let _ = writeln!(
        report,
        "\nlog: {} warning lines in the faults' windows, {unexpected} outside them",
        expected.len()
    );
    for line in expected.iter().take(12) {
        let _ = writeln!(report, "  {}", line.chars().take(200).collect::<String>());
    }
}

/// Memory, descriptors and threads after the warm-up (5 minutes, or a
/// third of a shorter run): growth under 5% (or within a little slack),
/// and the CPU used.
pub fn figures(
    samples: &[Sample],
    duration: Duration,
    report: &mut String,
    failures: &mut Vec<String>,
) {
    let warm = (duration.as_secs_f64() / 3.0).min(300.0);
    let Some(first) = samples.iter().position(|s| s.at >= warm) else {
        failures.push("too few samples for the figures".into());
        return;
    };
    // Three samples from the warm-up on, and the last three: the median of
    // each, so that a thread or descriptor that comes and goes (the
    // blocking pool's, a scrape's) is not taken for growth.
    let (base, end) = (
        &samples[first..(first + 3).min(samples.len())],
        &samples[samples.len().saturating_sub(3).max(first)..],
    );
    let median = |part: &[Sample], figure: Figure| {
        let mut values: Vec<f64> = part.iter().map(figure).collect();
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let cpu: Vec<f64> = samples.iter().map(|s| s.cpu_percent).collect();
    let mean_cpu = cpu.iter().sum::<f64>() / cpu.len().max(1) as f64;
    let max_cpu = cpu.iter().copied().fold(0.0, f64::max);
    let _ = writeln!(
        report,
        "\nfigure (median of 3 samples)  from {:>5.0} s  to {:>5.0} s  growth\n",
        base[0].at,
        end[end.len() - 1].at
    );
    let rows: [(&str, Figure, f64); 3] = [
        ("resident MiB", |s| s.rss_mib, 2.0),
        ("open fds", |s| s.fds as f64, 4.0),
        ("threads", |s| s.threads as f64, 2.0),
    ];
    for (name, figure, slack) in rows {
        let (from, to) = (median(base, figure), median(end, figure));
        let growth = (to - from) / from.max(1.0);
        let _ = writeln!(
            report,
            "{name:<29} {from:>9.1}  {to:>9.1}  {:+.1}%",
            growth * 100.0
        );
        if growth > FLAT && to - from > slack {
            failures.push(format!(
                "{name} grew {:.1}% after the warm-up ({from:.1} -> {to:.1})",
                growth * 100.0
            ));
        }
    }
    let peak_rss = samples.iter().map(|s| s.rss_mib).fold(0.0, f64::max);
    let _ = writeln!(
        report,
        "resident MiB peak {peak_rss:.1}; CPU {mean_cpu:.1}% of one core on average, {max_cpu:.1}% at most (per {} s)",
        SCRAPE_EVERY.as_secs()
    );
}
