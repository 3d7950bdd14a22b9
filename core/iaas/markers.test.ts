import { describe, expect, it } from 'vitest';
import { isVisorError } from '../errors.js';
import {
  checkClaim,
  claimProblem,
  defaultMarkerKeys,
  isMarkerKey,
  markersFromAttributes,
  markersToAttributes,
  type Claim,
} from './markers.js';
import type { Markers } from './port.js';

const base: Markers = {
  agent: 'agent-1',
  target: 'prod',
  imageId: '3f2b1c4e-0000-4000-8000-000000000001',
  sha256: 'a'.repeat(64),
  revision: 3,
};
const { target: _target, ...legacy } = base;

describe('markers', () => {
  it('round-trip with the target, and without it (the older scheme)', () => {
    expect(markersToAttributes(base)).toEqual({
      visor_agent: 'agent-1',
      visor_target: 'prod',
      visor_image_id: base.imageId,
      visor_sha256: base.sha256,
      visor_revision: '3',
    });
    expect(markersFromAttributes(markersToAttributes(base))).toEqual(base);
    expect(markersToAttributes(legacy)).not.toHaveProperty('visor_target');
    expect(markersFromAttributes(markersToAttributes(legacy))).toEqual(legacy);
    // A blanked target (clouds whose updates can only blank an attribute) reads as absent.
    expect(markersFromAttributes({ ...markersToAttributes(base), visor_target: '' })).toEqual(legacy);
    expect(isMarkerKey('visor_target')).toBe(true);
    expect(isMarkerKey('visor_targets')).toBe(false);
  });

  it('are "not ours" when the target is there but malformed', () => {
    for (const target of ['Prod', 'prod target', 'x'.repeat(64), 7, '-prod']) {
      expect(
        markersFromAttributes({ ...markersToAttributes(base), [defaultMarkerKeys.target]: target }),
        String(target),
      ).toBeUndefined();
    }
  });
});

describe('claims', () => {
  const mine: Claim = { owner: 'target', agent: 'agent-1', target: 'prod', imageId: base.imageId };
  const old: Claim = { owner: 'legacy', agent: 'agent-1', imageId: base.imageId };

  it('fit only markers of the same agent, target and catalog image', () => {
    expect(claimProblem(base, mine)).toBeUndefined();
    expect(claimProblem({ ...base, target: 'staging' }, mine)).toMatch(/marked for target staging, not prod/);
    expect(claimProblem({ ...base, agent: 'agent-2' }, mine)).toMatch(/agent agent-2, not agent-1/);
    expect(claimProblem({ ...base, imageId: '3f2b1c4e-0000-4000-8000-000000000002' }, mine)).toMatch(
      /copy of catalog image/,
    );
    expect(claimProblem(legacy, mine)).toMatch(/name no target/);
    expect(claimProblem(undefined, mine)).toMatch(/no \(or no complete\) visor markers/);
  });

  it('of the older scheme fit only markers without a target; adopting fits only unmarked images', () => {
    expect(claimProblem(legacy, old)).toBeUndefined();
    expect(claimProblem(base, old)).toMatch(/marked for target prod now/);
    expect(claimProblem(undefined, { owner: 'none' })).toBeUndefined();
    expect(claimProblem(base, { owner: 'none' })).toMatch(/marked by agent agent-1 for target prod/);
  });

  it('refuse as conflict, naming the image and what it is doing', () => {
    expect(() => checkClaim('n-1', base, undefined, 'delete')).not.toThrow();
    try {
      checkClaim('n-1', { ...base, target: 'staging' }, mine, 'delete');
      expect.unreachable();
    } catch (error) {
      expect(isVisorError(error, 'conflict')).toBe(true);
      expect((error as Error).message).toBe('refusing to delete image n-1: it is marked for target staging, not prod');
    }
  });
});
