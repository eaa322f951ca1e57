export * from './informer.ts';
export * from './waggle-informers.ts';
