"""The report's stylesheet (inline in the page: it must open with no network)."""

CSS = """
:root { --fg:#1f2937; --mute:#6b7280; --line:#e5e7eb; --bg:#f9fafb; --card:#fff; --ok:#16a34a;
        --bad:#dc2626; --warn:#d97706; --run:#2563eb; --skip:#9ca3af; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
       background: var(--bg); margin: 0; padding: 24px 32px 48px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 28px 0 10px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
h3 { font-size: 15px; margin: 0; }
.sub { color: var(--mute); margin-bottom: 16px; }
.sub code { color: var(--fg); }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 14px 16px;
        margin-bottom: 14px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-weight: 600; color: var(--mute); font-size: 12px; text-transform: uppercase; letter-spacing: .03em; }
td.num { font-variant-numeric: tabular-nums; white-space: nowrap; }
code, .path { font: 12px ui-monospace, SFMono-Regular, Menlo, monospace; word-break: break-all; }
.status { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; color: #fff; }
.s-completed { background: var(--ok); } .s-failed { background: var(--bad); } .s-running { background: var(--run); }
.s-skipped { background: var(--skip); } .s-other { background: var(--warn); }
.warnings { border-left: 4px solid var(--warn); background: #fffbeb; }
.warnings li { margin: 2px 0; }
.better { color: var(--ok); font-weight: 600; } .worse { color: var(--bad); font-weight: 600; }
.panels { display: flex; flex-wrap: wrap; gap: 8px; }
svg.panel { background: #fff; border: 1px solid var(--line); border-radius: 6px; }
svg .ptitle { font-size: 11px; font-weight: 600; fill: var(--fg); }
svg .plast { font-size: 10px; fill: var(--mute); text-anchor: end; }
svg .ytick { font-size: 9px; fill: var(--mute); text-anchor: end; }
svg .xtick { font-size: 9px; fill: var(--mute); text-anchor: middle; }
svg .xlabel { font-size: 9px; fill: var(--mute); text-anchor: end; }
svg .grid { stroke: #eef0f3; } svg .axis { stroke: #9ca3af; }
.answers td { min-width: 180px; max-width: 360px; white-space: pre-wrap; word-break: break-word; font-size: 13px; }
.answers td.prompt { background: #f3f4f6; font-weight: 500; }
.answers th .fp { font-weight: 400; text-transform: none; }
.episode { border-left: 3px solid #d1d5db; margin: 8px 0; padding-left: 8px; font-size: 13px; }
.episode .turn { white-space: pre-wrap; word-break: break-word; margin: 2px 0; }
.episode .turn.assistant { background: #eef2ff; }
.episode .turn.tool { background: #ecfdf5; font-family: monospace; }
.settings { columns: 3 260px; font-size: 12px; }
.settings div { break-inside: avoid; padding: 1px 0; }
.settings .k { color: var(--mute); }
.stagehead { display: flex; gap: 12px; align-items: baseline; flex-wrap: wrap; margin-bottom: 8px; }
.muted { color: var(--mute); }
details summary { cursor: pointer; color: var(--mute); margin: 8px 0 4px; }
.two > div:first-child td { word-break: break-word; }
.two { display: grid; grid-template-columns: minmax(340px, 440px) 1fr; gap: 16px; }
.timeline { display: flex; gap: 4px; margin-bottom: 10px; }
.timeline .bar { color: #fff; font-size: 12px; font-weight: 600; padding: 7px 10px; border-radius: 4px;
                 white-space: nowrap; overflow: hidden; text-overflow: ellipsis; min-width: 90px; }
@media (max-width: 900px) { .two { grid-template-columns: 1fr; } }
"""
