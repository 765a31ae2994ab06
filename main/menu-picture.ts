/**
 * A picture of the tray menu, drawn from the same menu model the app shows:
 * the model as a standalone HTML page (a panel with the tray icon, the open
 * menu below it). build/render-menu.mjs screenshots it for the README with
 * headless Chromium. Pure: no browser, no file access here.
 */
import type { MenuModel } from './menu-model.js';

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string);
}

export interface MenuPictureOptions {
  /** Inline SVG of the tray icon, shown in the panel above the menu. */
  trayIconSvg?: string;
  title?: string;
}

export function menuToHtml(model: MenuModel, options: MenuPictureOptions = {}): string {
  const rows = model.items.map((item) => {
    if (item.type === 'separator') return '<div class="sep"></div>';
    const check = item.type === 'checkbox' ? `<span class="check">${item.checked ? '✓' : ''}</span>` : '<span class="check"></span>';
    const cls = ['item', item.enabled ? '' : 'disabled', item.id.startsWith('open:') ? 'sub' : ''].filter(Boolean).join(' ');
    return `<div class="${cls}" data-id="${escapeHtml(item.id)}">${check}<span class="label">${escapeHtml(item.label)}</span></div>`;
  });
  const icon = options.trayIconSvg ?? '';
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>${escapeHtml(options.title ?? 'SOS Mount tray menu')}</title>
<style>
  html, body { margin: 0; background: transparent; }
  body { font: 14px/1.2 "Cantarell", "Noto Sans", "DejaVu Sans", system-ui, sans-serif; color: #1f1f1f; display: inline-block; padding: 0 24px 24px 24px; }
  .panel { height: 30px; background: #202124; border-radius: 0 0 8px 8px; display: flex; justify-content: flex-end; align-items: center; padding: 0 12px; gap: 14px; color: #eee; font-size: 13px; }
  .panel .tray { width: 20px; height: 20px; display: flex; background: rgba(255,255,255,0.18); border-radius: 4px; padding: 2px; }
  .panel .tray svg { width: 20px; height: 20px; }
  .menu { margin: 6px 0 0 auto; width: max-content; min-width: 300px; background: #fff; border: 1px solid #d0d0d0; border-radius: 8px; box-shadow: 0 6px 18px rgba(0,0,0,0.22); padding: 6px 0; }
  .item { display: flex; align-items: center; padding: 6px 18px 6px 8px; white-space: nowrap; }
  .item.disabled { color: #8a8a8a; }
  .item.sub .label { padding-left: 14px; }
  .check { display: inline-block; width: 22px; text-align: center; font-weight: bold; color: #1a73e8; }
  .sep { height: 1px; background: #e2e2e2; margin: 5px 0; }
  .row { display: flex; justify-content: flex-end; }
</style></head>
<body>
  <div class="panel" title="${escapeHtml(model.tooltip)}"><span class="tray">${icon}</span><span>14:02</span></div>
  <div class="row"><div class="menu">
    ${rows.join('\n    ')}
  </div></div>
</body></html>
`;
}
