#!/usr/bin/env python3
"""Server RSS against idle connections, for every target of a run-local.sh results directory.

Usage: loadtest/plot-idle-growth.py RESULTS_DIR [OUT.svg]

Reads RESULTS_DIR/idle-*-<target>.json (`run-local.sh --only idle-1k,idle-2k,idle-5k,...`),
plots each target's server RSS (at the end of the idle window) against the connections it
held, and writes OUT.svg (default RESULTS_DIR/idle-growth.svg) and a table of the points on
stdout. Plain SVG, no plotting library.
"""
import glob, json, os, sys

res = sys.argv[1]
out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(res, "idle-growth.svg")
series = {}
for f in sorted(glob.glob(os.path.join(res, "idle-*.json"))):
    d = json.load(open(f))
    if d.get("scenario") != "idle":
        continue
    n = d["conns"]["connected"]
    s = d["server"]
    series.setdefault(d["target"], []).append((n, s["rss_bytes_end"], s["rss_bytes_start"], s["rss_per_conn_bytes"]))
for pts in series.values():
    pts.sort()

print("| target | connections | server RSS | RSS per connection (above the start) |")
print("| --- | ---: | ---: | ---: |")
for t, pts in series.items():
    for n, end, start, per in pts:
        print(f"| {t} | {n:,} | {end / 2**20:.1f} MiB | {per / 1024:.1f} KiB |")

W, H, L, R, T, B = 720, 440, 80, 160, 30, 60
xmax = max(n for pts in series.values() for n, *_ in pts) * 1.05
ymax = max(e for pts in series.values() for _, e, *_ in pts) / 2**20 * 1.1
X = lambda n: L + (W - L - R) * n / xmax
Y = lambda mib: H - B - (H - T - B) * mib / ymax
colors = {"switchboard": "#1f77b4", "node": "#d62728"}
svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
       f'<rect width="{W}" height="{H}" fill="white"/>',
       f'<text x="{W/2}" y="18" text-anchor="middle" font-size="14">Server RSS vs idle WebSocket connections (same run)</text>']
step = 10 ** len(str(int(ymax))) // 10 or 1
if ymax / step < 4: step //= 2 or 1
y = 0
while y <= ymax:
    svg.append(f'<line x1="{L}" y1="{Y(y):.1f}" x2="{W-R}" y2="{Y(y):.1f}" stroke="#ddd"/>')
    svg.append(f'<text x="{L-6}" y="{Y(y)+4:.1f}" text-anchor="end">{y}</text>')
    y += step
for n in range(0, int(xmax) + 1, 5000):
    svg.append(f'<line x1="{X(n):.1f}" y1="{T}" x2="{X(n):.1f}" y2="{H-B}" stroke="#eee"/>')
    svg.append(f'<text x="{X(n):.1f}" y="{H-B+16}" text-anchor="middle">{n:,}</text>')
svg.append(f'<line x1="{L}" y1="{H-B}" x2="{W-R}" y2="{H-B}" stroke="black"/>')
svg.append(f'<line x1="{L}" y1="{T}" x2="{L}" y2="{H-B}" stroke="black"/>')
svg.append(f'<text x="{(L+W-R)/2}" y="{H-20}" text-anchor="middle">idle connections</text>')
svg.append(f'<text x="20" y="{(T+H-B)/2}" text-anchor="middle" transform="rotate(-90 20 {(T+H-B)/2})">server RSS (MiB)</text>')
for i, (t, pts) in enumerate(series.items()):
    c = colors.get(t, "#2ca02c")
    path = " ".join(f"{X(n):.1f},{Y(e/2**20):.1f}" for n, e, *_ in pts)
    svg.append(f'<polyline points="{path}" fill="none" stroke="{c}" stroke-width="2"/>')
    for n, e, *_ in pts:
        svg.append(f'<circle cx="{X(n):.1f}" cy="{Y(e/2**20):.1f}" r="3" fill="{c}"/>')
    n, e, s, per = pts[-1]
    svg.append(f'<text x="{W-R+10}" y="{T+20+i*36}" fill="{c}">{t}</text>')
    svg.append(f'<text x="{W-R+10}" y="{T+34+i*36}" fill="{c}" font-size="11">{per/1024:.1f} KiB/conn at {n:,}</text>')
svg.append("</svg>")
open(out, "w").write("\n".join(svg) + "\n")
print(f"\n{out}")
