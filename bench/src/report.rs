//! Results as JSON, Markdown tables and SVG charts (hand-written SVG: two
//! chart shapes do not justify a plotting library and its font stack).

use std::fmt::Write as _;

/// One line of a line chart.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// (x, y) points, in x order.
    pub points: Vec<(f64, f64)>,
}

const COLOURS: [&str; 6] = [
    "#1f5fa8", "#c0392b", "#2e8b57", "#8e44ad", "#d68910", "#555555",
];
const W: f64 = 760.0;
const H: f64 = 440.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 200.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A "nice" upper bound for an axis.
fn nice_max(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if v <= m * mag {
            return m * mag;
        }
    }
    10.0 * mag
}

fn frame(out: &mut String, title: &str, x_label: &str, y_label: &str) {
    let _ = write!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="22" font-size="15" text-anchor="middle">{}</text>
<text x="{}" y="{}" text-anchor="middle">{}</text>
<text x="18" y="{}" text-anchor="middle" transform="rotate(-90 18 {})">{}</text>
"##,
        (LEFT + W - RIGHT) / 2.0,
        escape(title),
        (LEFT + W - RIGHT) / 2.0,
        H - 15.0,
        escape(x_label),
        (TOP + H - BOTTOM) / 2.0,
        (TOP + H - BOTTOM) / 2.0,
        escape(y_label),
    );
}

fn y_axis(out: &mut String, y_max: f64) {
    let plot_h = H - TOP - BOTTOM;
    for i in 0..=5 {
        let v = y_max * f64::from(i) / 5.0;
        let y = H - BOTTOM - plot_h * f64::from(i) / 5.0;
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            W - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            short(v)
        );
    }
}

/// A number with at most three significant digits and k/M suffixes.
pub fn short(v: f64) -> String {
    let (v, suffix) = if v.abs() >= 1e6 {
        (v / 1e6, "M")
    } else if v.abs() >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    let text = if v.abs() >= 100.0 || v == v.trunc() {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    };
    format!("{text}{suffix}")
}

/// A line chart of several series sharing both axes (linear, from zero).
pub fn line_chart(title: &str, x_label: &str, y_label: &str, series: &[Series]) -> String {
    let mut out = String::new();
    frame(&mut out, title, x_label, y_label);
    let pts = series.iter().flat_map(|s| s.points.iter());
    let x_max = nice_max(pts.clone().map(|p| p.0).fold(0.0, f64::max));
    let y_max = nice_max(pts.map(|p| p.1).fold(0.0, f64::max));
    let (plot_w, plot_h) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    y_axis(&mut out, y_max);
    for i in 0..=5 {
        let v = x_max * f64::from(i) / 5.0;
        let x = LEFT + plot_w * f64::from(i) / 5.0;
        let _ = writeln!(
            out,
            r##"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            H - BOTTOM + 18.0,
            short(v)
        );
    }
    for (i, s) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let path: Vec<String> = s
            .points
            .iter()
            .map(|(x, y)| {
                format!(
                    "{:.1},{:.1}",
                    LEFT + plot_w * x / x_max,
                    H - BOTTOM - plot_h * (y / y_max).min(1.0)
                )
            })
            .collect();
        let _ = writeln!(
            out,
            r##"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"##,
            path.join(" ")
        );
        for p in &path {
            let (x, y) = p.split_once(',').unwrap_or(("0", "0"));
            let _ = writeln!(
                out,
                r##"<circle cx="{x}" cy="{y}" r="3" fill="{colour}"/>"##
            );
        }
        legend(&mut out, i, colour, &s.name);
    }
    out.push_str("</svg>\n");
    out
}

fn legend(out: &mut String, i: usize, colour: &str, name: &str) {
    let y = TOP + 10.0 + 20.0 * i as f64;
    let x = W - RIGHT + 15.0;
    let _ = writeln!(
        out,
        r##"<rect x="{x}" y="{:.1}" width="12" height="12" fill="{colour}"/><text x="{:.1}" y="{:.1}">{}</text>"##,
        y - 10.0,
        x + 18.0,
        y,
        escape(name)
    );
}

/// A bar chart: one group of bars per category, one bar per series
/// (series points are (category index, value)).
pub fn bar_chart(title: &str, categories: &[String], y_label: &str, series: &[Series]) -> String {
    let mut out = String::new();
    frame(&mut out, title, "", y_label);
    let y_max = nice_max(
        series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .fold(0.0, f64::max),
    );
    let (plot_w, plot_h) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    y_axis(&mut out, y_max);
    let group_w = plot_w / categories.len().max(1) as f64;
    let bar_w = (group_w * 0.8) / series.len().max(1) as f64;
    for (c, name) in categories.iter().enumerate() {
        let _ = writeln!(
            out,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            LEFT + group_w * (c as f64 + 0.5),
            H - BOTTOM + 18.0,
            escape(name)
        );
    }
    for (i, s) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        for (c, v) in &s.points {
            let h = plot_h * (v / y_max).min(1.0);
            let x = LEFT + group_w * c + group_w * 0.1 + bar_w * i as f64;
            let _ = writeln!(
                out,
                r##"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" fill="{colour}"><title>{}: {}</title></rect>"##,
                H - BOTTOM - h,
                bar_w * 0.95,
                escape(&s.name),
                short(*v)
            );
        }
        legend(&mut out, i, colour, &s.name);
    }
    out.push_str("</svg>\n");
    out
}

/// A Markdown table.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = format!(
        "| {} |\n|{}\n",
        header.join(" | "),
        "---|".repeat(header.len())
    );
    for r in rows {
        let _ = writeln!(out, "| {} |", r.join(" | "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_well_formed_xml_with_every_series() {
        let series = vec![
            Series {
                name: "kontor <sqlite>".into(),
                points: vec![(100.0, 1.0), (200.0, 3.5)],
            },
            Series {
                name: "prosody".into(),
                points: vec![(50.0, 2.0)],
            },
        ];
        let line = line_chart("p99", "rate", "ms", &series);
        assert!(line.contains("kontor &lt;sqlite&gt;") && line.contains("prosody"));
        assert_eq!(line.matches("<polyline").count(), 2);
        let bars = bar_chart(
            "max",
            &["256 B".into()],
            "msg/s",
            &[Series {
                name: "a".into(),
                points: vec![(0.0, 5.0)],
            }],
        );
        assert_eq!(
            bars.matches("<rect x=").count(),
            2,
            "one bar and one legend box"
        );
        for svg in [line, bars] {
            assert_eq!(svg.matches("<svg").count(), 1);
            assert!(svg.trim_end().ends_with("</svg>"));
        }
    }

    #[test]
    fn short_numbers_and_nice_axes() {
        assert_eq!(short(1234.0), "1.23k");
        assert_eq!(short(25_000.0), "25k");
        assert_eq!(short(3.0), "3");
        assert_eq!(nice_max(730.0), 1000.0);
        assert_eq!(nice_max(180.0), 200.0);
        assert_eq!(nice_max(0.0), 1.0);
    }
}
