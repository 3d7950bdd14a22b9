/** Canned ACLs of bundle objects; apart from walrus.ts so that the options schema need not load the S3 SDK. */
export const bundleAcls = ['aws-exec-read', 'private', 'public-read', 'ec2-bundle-read', 'none'] as const;
export type BundleAcl = (typeof bundleAcls)[number];
