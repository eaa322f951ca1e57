export * from './condition.ts';
export * from './crd.ts';
export * from './duration.ts';
export * from './environment.ts';
export * from './group.ts';
export * from './node.ts';
export * from './render.ts';
export * from './structural-schema.ts';
