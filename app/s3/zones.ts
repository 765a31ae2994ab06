/**
 * The one list of Exoscale SOS zones. The CLI (`--zone`), the settings window
 * and endpoint validation all read it, so adding a zone is a one-line change.
 *
 * Checked against the zone enum of Exoscale's public API (v2 `ZoneName`).
 * SOS signs requests with the zone name as the SigV4 region, and serves each
 * zone at `https://sos-<zone>.exo.io`.
 */

const ZONES = [
  { zone: 'ch-gva-2', label: 'Geneva (CH)' },
  { zone: 'ch-dk-2', label: 'Zurich (CH)' },
  { zone: 'de-fra-1', label: 'Frankfurt (DE)' },
  { zone: 'de-muc-1', label: 'Munich (DE)' },
  { zone: 'at-vie-1', label: 'Vienna 1 (AT)' },
  { zone: 'at-vie-2', label: 'Vienna 2 (AT)' },
  { zone: 'bg-sof-1', label: 'Sofia (BG)' },
] as const;

export type ExoscaleZoneName = (typeof ZONES)[number]['zone'];

export interface ExoscaleZone {
  readonly zone: ExoscaleZoneName;
  /** For menus and the settings window, e.g. "Geneva (CH)". */
  readonly label: string;
  /** `https://sos-<zone>.exo.io`, no trailing slash. */
  readonly endpoint: string;
  /** The SigV4 signing region; on SOS it is the zone name. */
  readonly region: string;
}

export const EXOSCALE_ZONES: readonly ExoscaleZone[] = Object.freeze(
  ZONES.map(({ zone, label }) =>
    Object.freeze({ zone, label, endpoint: `https://sos-${zone}.exo.io`, region: zone }),
  ),
);

export class UnknownZoneError extends Error {
  override readonly name = 'UnknownZoneError';
  readonly zone: string;

  constructor(zone: string) {
    super(`unknown Exoscale zone '${zone}'; known zones: ${EXOSCALE_ZONES.map((z) => z.zone).join(', ')}`);
    this.zone = zone;
  }
}

export function isExoscaleZone(name: string): name is ExoscaleZoneName {
  return EXOSCALE_ZONES.some((z) => z.zone === name);
}

/** @throws UnknownZoneError */
export function exoscaleZone(name: string): ExoscaleZone {
  const found = EXOSCALE_ZONES.find((z) => z.zone === name);
  if (found === undefined) throw new UnknownZoneError(name);
  return found;
}

/** @throws UnknownZoneError */
export function zoneEndpoint(zone: string): string {
  return exoscaleZone(zone).endpoint;
}

/**
 * The zone whose SOS endpoint `url` points at, if any. Lets a mount given
 * only `--endpoint-url https://sos-ch-dk-2.exo.io` (the tutorial's form) sign
 * for the right region instead of the SDK's us-east-1 fallback.
 */
export function zoneForEndpoint(url: string): ExoscaleZone | undefined {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return undefined;
  }
  const host = parsed.hostname.toLowerCase();
  return EXOSCALE_ZONES.find((z) => new URL(z.endpoint).hostname === host);
}
