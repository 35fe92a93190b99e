//! The pps-vs-rules plot (PNG, `plotters`' bitmap backend). Text is drawn from
//! the public-domain 8x8 bitmap font of the `font8x8` crate, pixel by pixel,
//! so no system font (and no font feature of plotters) is needed.

use super::report::{label, pps_at, rank, rule_dependent, Row};
use anyhow::anyhow;
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;

const W: u32 = 960;
const H: u32 = 560;
const LEFT: i32 = 80;
const TOP: i32 = 50;
const PLOT_W: i32 = 560;
const PLOT_H: i32 = 440;

pub(crate) const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];

pub(crate) fn text<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    x: i32,
    y: i32,
    s: &str,
    color: &RGBColor,
) {
    for (i, c) in s.chars().enumerate() {
        let Some(glyph) = font8x8::legacy::BASIC_LEGACY.get(c as usize) else {
            continue;
        };
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8 {
                if bits & (1 << col) != 0 {
                    let _ = area.draw_pixel((x + i as i32 * 8 + col, y + row as i32), color);
                }
            }
        }
    }
}

pub(crate) const BLACK: RGBColor = RGBColor(0, 0, 0);
pub(crate) const GREY: RGBColor = RGBColor(210, 210, 210);

/// A white `size` canvas for `png` with `title` at the top, from `left`.
pub(crate) fn canvas<'a>(
    png: &'a Path,
    size: (u32, u32),
    left: i32,
    title: &str,
) -> anyhow::Result<DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>> {
    let root = BitMapBackend::new(png, size).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("plot: {e}"))?;
    text(&root, left, 16, title, &BLACK);
    Ok(root)
}

fn human(v: f64) -> String {
    if v >= 1e6 {
        format!("{}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{}k", v / 1e3)
    } else {
        format!("{v}")
    }
}

/// pps at the sink (64 B, log scale) against the rule count, one line per DUT.
pub fn pps_vs_rules(rows: &[Row], png: &Path) -> anyhow::Result<()> {
    let tput: Vec<&Row> = rows
        .iter()
        .filter(|r| r.kind == "tput" && r.size == 64)
        .collect();
    let mut rules: Vec<u32> = tput.iter().map(|r| r.rules).collect();
    rules.sort_unstable();
    rules.dedup();
    let mut groups: BTreeMap<(String, u32), Vec<&Row>> = BTreeMap::new();
    for r in &tput {
        groups.entry((r.dut.clone(), r.rules)).or_default().push(r);
    }
    let mut duts: Vec<String> = tput.iter().map(|r| r.dut.clone()).collect();
    duts.sort_by_key(|d| (rank(d), d.clone()));
    duts.dedup();
    let series: Vec<(String, Vec<f64>)> = duts
        .iter()
        .map(|d| {
            let ys = rules
                .iter()
                .map(|&n| pps_at(&groups, d, n).unwrap_or(0.0))
                .collect();
            (d.clone(), ys)
        })
        .collect();
    let max = series
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .fold(1.0f64, f64::max);
    let (lo_dec, hi_dec) = (2i32, (max.log10().ceil() as i32).max(3));

    let root = canvas(
        png,
        (W, H),
        LEFT,
        "pps at the sink vs rules (64-byte UDP, 10k flows, log scale)",
    )?;
    let (black, grey) = (BLACK, GREY);
    let ypix = |v: f64| -> i32 {
        let l = v.max(10f64.powi(lo_dec)).log10();
        TOP + PLOT_H
            - ((l - f64::from(lo_dec)) / f64::from(hi_dec - lo_dec) * f64::from(PLOT_H)) as i32
    };
    let n = rules.len().max(1) as i32;
    let xpix = |i: usize| -> i32 {
        if n == 1 {
            LEFT + PLOT_W / 2
        } else {
            LEFT + 60 + (i as i32) * (PLOT_W - 120) / (n - 1)
        }
    };
    let draw = |e: Result<(), DrawingAreaErrorKind<_>>| e.map_err(|e| anyhow!("plot: {e}"));
    for d in lo_dec..=hi_dec {
        let y = ypix(10f64.powi(d));
        draw(root.draw(&PathElement::new(vec![(LEFT, y), (LEFT + PLOT_W, y)], grey)))?;
        let t = human(10f64.powi(d));
        text(&root, LEFT - 8 - 8 * t.len() as i32, y - 4, &t, &black);
    }
    draw(root.draw(&Rectangle::new(
        [(LEFT, TOP), (LEFT + PLOT_W, TOP + PLOT_H)],
        black,
    )))?;
    for (i, r) in rules.iter().enumerate() {
        let t = format!("{} rules", human(f64::from(*r)));
        text(
            &root,
            xpix(i) - 4 * t.len() as i32,
            TOP + PLOT_H + 10,
            &t,
            &black,
        );
    }
    text(&root, 8, TOP - 20, "frames/s", &black);
    for (k, (dut, ys)) in series.iter().enumerate() {
        let c = COLORS[k % COLORS.len()];
        let pts: Vec<(i32, i32)> = ys
            .iter()
            .enumerate()
            .filter(|(_, v)| **v > 0.0)
            .map(|(i, v)| (xpix(i), ypix(*v)))
            .collect();
        let style = if rule_dependent(dut) {
            c.stroke_width(2)
        } else {
            c.stroke_width(1)
        };
        draw(root.draw(&PathElement::new(pts.clone(), style)))?;
        for p in &pts {
            draw(root.draw(&Circle::new(*p, 4, c.filled())))?;
        }
        let ly = TOP + 10 + k as i32 * 22;
        let lx = LEFT + PLOT_W + 20;
        draw(root.draw(&PathElement::new(
            vec![(lx, ly + 4), (lx + 24, ly + 4)],
            c.stroke_width(3),
        )))?;
        text(&root, lx + 32, ly, label(dut), &black);
    }
    text(
        &root,
        LEFT + PLOT_W + 20,
        TOP + PLOT_H - 10,
        "thin: no rules involved",
        &black,
    );
    root.present().map_err(|e| anyhow!("plot: {e}"))?;
    Ok(())
}
