// Headless Chromium for the build scripts (icons, the README's menu picture),
// through playwright-core. CHROMIUM_PATH overrides /usr/bin/chromium.
import { chromium } from 'playwright-core';

export async function withPage(fn) {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu'],
  });
  try {
    const page = await browser.newPage({ deviceScaleFactor: 1 });
    return await fn(page);
  } finally {
    await browser.close();
  }
}
