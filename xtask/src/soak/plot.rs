//! The soak's figures over time: one sample per scrape, kept as CSV and
//! drawn as an SVG (resident memory, CPU, open descriptors and threads,
//! the faults marked).
use std::fmt::Write as _;

/// loupe's process at one scrape.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    /// Seconds since the load started.
    pub at: f64,
    pub rss_mib: f64,
    /// CPU used since the previous sample, in percent of one core.
    pub cpu_percent: f64,
    pub fds: u64,
    pub threads: u64,
}

pub fn csv(samples: &[Sample]) -> String {
    let mut out = "seconds,rss_mib,cpu_percent,fds,threads\n".to_owned();
    for s in samples {
        let _ = writeln!(
            out,
            "{:.0},{:.2},{:.2},{},{}",
            s.at, s.rss_mib, s.cpu_percent, s.fds, s.threads
        );
    }
    out
}

/// One figure of a sample.
pub type Figure = fn(&Sample) -> f64;

const WIDTH: f64 = 900.0;
const PANEL: f64 = 150.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;

/// One panel per figure, sharing the time axis (0 to `end` seconds);
/// `faults` are (seconds, name).
pub fn svg(samples: &[Sample], end: f64, faults: &[(f64, String)], title: &str) -> String {
    let panels: [(&str, Figure); 4] = [
        ("resident memory (MiB)", |s| s.rss_mib),
        ("CPU (% of one core, per sample)", |s| s.cpu_percent),
        ("open file descriptors", |s| s.fds as f64),
        ("threads", |s| s.threads as f64),
    ];
    let end = end.max(1.0);
    let height = 60.0 + panels.len() as f64 * (PANEL + 40.0);
    let x = |at: f64| LEFT + at / end * (WIDTH - LEFT - RIGHT);
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" \
         font-family=\"sans-serif\" font-size=\"11\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{LEFT}\" y=\"20\" font-size=\"14\">{title}</text>\n"
    );
    for (index, (name, value)) in panels.iter().enumerate() {
        let top = 50.0 + index as f64 * (PANEL + 40.0);
        let max = samples.iter().map(value).fold(1.0_f64, f64::max) * 1.15;
        let y = |v: f64| top + PANEL - v / max * PANEL;
        let _ = writeln!(
            out,
            "<text x=\"{LEFT}\" y=\"{}\">{name}</text>\n\
             <rect x=\"{LEFT}\" y=\"{top}\" width=\"{}\" height=\"{PANEL}\" fill=\"none\" stroke=\"#999\"/>\n\
             <text x=\"{}\" y=\"{}\" text-anchor=\"end\">{max:.1}</text>\n\
             <text x=\"{}\" y=\"{}\" text-anchor=\"end\">0</text>",
            top - 6.0,
            WIDTH - LEFT - RIGHT,
            LEFT - 4.0,
            top + 10.0,
            LEFT - 4.0,
            top + PANEL,
        );
        let points: Vec<String> = samples
            .iter()
            .map(|s| format!("{:.1},{:.1}", x(s.at), y(value(s))))
            .collect();
        let _ = writeln!(
            out,
            "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.5\" points=\"{}\"/>",
            points.join(" ")
        );
        for (at, fault) in faults {
            let _ = writeln!(
                out,
                "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{top}\" y2=\"{1}\" stroke=\"#f0a000\" stroke-dasharray=\"3,3\"/>",
                x(*at),
                top + PANEL
            );
            if index == 0 {
                let _ = writeln!(
                    out,
                    "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"9\" fill=\"#a06000\" \
                     transform=\"rotate(-90 {0:.1} {1:.1})\" text-anchor=\"end\">{fault}</text>",
                    x(*at) - 3.0,
                    top + 4.0
                );
            }
        }
    }
    let bottom = height - 8.0;
    let _ = writeln!(
        out,
        "<text x=\"{LEFT}\" y=\"{bottom}\">0 s</text>\n\
         <text x=\"{}\" y=\"{bottom}\" text-anchor=\"end\">{end:.0} s</text>\n\
         <text x=\"{}\" y=\"{bottom}\" text-anchor=\"middle\">one sample per scrape (15 s); dashed: the faults</text>\n</svg>",
        WIDTH - RIGHT,
        WIDTH / 2.0
    );
    out
}
