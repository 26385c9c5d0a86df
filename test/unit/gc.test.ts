import { describe, expect, it } from 'vitest';
import { tuneGcForServing } from '../../src/gc.ts';

describe('tuneGcForServing', () => {
  it('leaves pretenuring alone when the command line sets it either way', () => {
    expect(tuneGcForServing(['--allocation-site-pretenuring'])).toBe(false);
    expect(tuneGcForServing(['--max-old-space-size=512', '--no-allocation_site_pretenuring'])).toBe(false);
  });

  it('turns pretenuring off otherwise', () => {
    expect(tuneGcForServing(['--import', 'tsx'])).toBe(true);
  });
});
