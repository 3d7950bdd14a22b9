/**
 * EC2 Query response bodies, element for element in the order of the 2010-08-31 WSDL types
 * (DescribeImagesResponseItemType, TagSetItemType, LaunchPermissionItemType, ...), in the
 * namespace of the Version the client asked for.
 */

export interface DoubleImage {
  id: string;
  location?: string;
  state: string;
  ownerId: string;
  isPublic: boolean;
  productCodes?: string[];
  architecture?: string;
  type: 'machine' | 'kernel' | 'ramdisk';
  kernelId?: string;
  ramdiskId?: string;
  platform?: string;
  stateReason?: { code: string; message: string };
  ownerAlias?: string;
  name?: string;
  description?: string;
  rootDeviceType: string;
  rootDeviceName?: string;
  blockDeviceMapping?: Array<{
    deviceName: string;
    virtualName?: string;
    ebs?: { snapshotId?: string; volumeSize?: number; deleteOnTermination?: boolean };
  }>;
  virtualizationType?: string;
  tags: Map<string, string>;
  launchUsers: Set<string>;
}

/** An instance as DescribeInstances shows it (RunningInstancesItemType, what an instance-store launch has). */
export interface DoubleInstance {
  id: string;
  reservationId: string;
  ownerId: string;
  imageId: string;
  state: { code: number; name: string };
  privateDnsName: string;
  dnsName: string;
  reason: string;
  keyName?: string;
  amiLaunchIndex: number;
  instanceType: string;
  launchTime: string;
  availabilityZone: string;
  kernelId?: string;
  ramdiskId?: string;
  privateIpAddress?: string;
  ipAddress?: string;
  stateReason?: { code: string; message: string };
  architecture?: string;
  rootDeviceType: string;
  rootDeviceName?: string;
  virtualizationType?: string;
}

export const escapeXml = (s: string) =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

type Node = string | undefined | false;
const el = (name: string, ...children: Node[]): string => {
  const inner = children.filter((c): c is string => typeof c === 'string');
  if (inner.length === 0) return `<${name}/>`;
  if (inner.length === 1 && !inner[0]!.startsWith('<')) return `<${name}>${inner[0]}</${name}>`;
  return `<${name}>${inner.join('')}</${name}>`;
};
const val = (name: string, value: string | number | boolean | undefined): Node =>
  value === undefined ? undefined : el(name, escapeXml(String(value)));

export function document(root: string, version: string, requestId: string, ...children: Node[]): string {
  const body = el(root, val('requestId', requestId), ...children).replace(
    `<${root}>`,
    `<${root} xmlns="http://ec2.amazonaws.com/doc/${version}/">`,
  );
  return `<?xml version="1.0" encoding="UTF-8"?>\n${body}`;
}

export function imageItem(image: DoubleImage, tagsOn: boolean): string {
  return el(
    'item',
    val('imageId', image.id),
    val('imageLocation', image.location),
    val('imageState', image.state),
    val('imageOwnerId', image.ownerId),
    val('isPublic', image.isPublic),
    image.productCodes && image.productCodes.length > 0
      ? el('productCodes', ...image.productCodes.map((c) => el('item', val('productCode', c))))
      : undefined,
    val('architecture', image.architecture),
    val('imageType', image.type),
    val('kernelId', image.kernelId),
    val('ramdiskId', image.ramdiskId),
    val('platform', image.platform),
    image.stateReason
      ? el('stateReason', val('code', image.stateReason.code), val('message', image.stateReason.message))
      : undefined,
    val('imageOwnerAlias', image.ownerAlias),
    val('name', image.name),
    val('description', image.description),
    val('rootDeviceType', image.rootDeviceType),
    val('rootDeviceName', image.rootDeviceName),
    el(
      'blockDeviceMapping',
      ...(image.blockDeviceMapping ?? []).map((m) =>
        el(
          'item',
          val('deviceName', m.deviceName),
          m.ebs
            ? el(
                'ebs',
                val('snapshotId', m.ebs.snapshotId),
                val('volumeSize', m.ebs.volumeSize),
                val('deleteOnTermination', m.ebs.deleteOnTermination),
              )
            : val('virtualName', m.virtualName ?? ''),
        ),
      ),
    ),
    val('virtualizationType', image.virtualizationType),
    tagsOn && image.tags.size > 0
      ? el('tagSet', ...[...image.tags].map(([k, v]) => el('item', val('key', k), val('value', v))))
      : undefined,
  );
}

/** One reservation per instance, as a RunInstances of one instance makes; elements in the WSDL's order. */
export function reservationItem(instance: DoubleInstance): string {
  return el(
    'item',
    val('reservationId', instance.reservationId),
    val('ownerId', instance.ownerId),
    el('groupSet', el('item', val('groupId', 'default'))),
    el(
      'instancesSet',
      el(
        'item',
        val('instanceId', instance.id),
        val('imageId', instance.imageId),
        el('instanceState', val('code', instance.state.code), val('name', instance.state.name)),
        val('privateDnsName', instance.privateDnsName),
        val('dnsName', instance.dnsName),
        val('reason', instance.reason),
        val('keyName', instance.keyName),
        val('amiLaunchIndex', instance.amiLaunchIndex),
        el('productCodes'),
        val('instanceType', instance.instanceType),
        val('launchTime', instance.launchTime),
        el('placement', val('availabilityZone', instance.availabilityZone)),
        val('kernelId', instance.kernelId),
        val('ramdiskId', instance.ramdiskId),
        el('monitoring', val('state', 'disabled')),
        val('privateIpAddress', instance.privateIpAddress),
        val('ipAddress', instance.ipAddress),
        instance.stateReason
          ? el('stateReason', val('code', instance.stateReason.code), val('message', instance.stateReason.message))
          : undefined,
        val('architecture', instance.architecture),
        val('rootDeviceType', instance.rootDeviceType),
        val('rootDeviceName', instance.rootDeviceName),
        val('virtualizationType', instance.virtualizationType),
      ),
    ),
  );
}

export const imagesSet = (items: string[]) => el('imagesSet', ...items);
export const tagSet = (tags: Array<{ resourceId: string; key: string; value: string }>) =>
  el(
    'tagSet',
    ...tags.map((t) =>
      el(
        'item',
        val('resourceId', t.resourceId),
        val('resourceType', 'image'),
        val('key', t.key),
        val('value', t.value),
      ),
    ),
  );
export const launchPermission = (image: DoubleImage) =>
  el(
    'launchPermission',
    ...(image.isPublic ? [el('item', val('group', 'all'))] : []),
    ...[...image.launchUsers].map((u) => el('item', val('userId', u))),
  );
export const nullable = (name: string, value: string | undefined) => el(name, val('value', value));
export { el, val };

export function errorDocument(code: string, message: string, requestId: string): string {
  return (
    `<?xml version="1.0" ` +
    `encoding="UTF-8"?>\n<Response><Errors><Error><Code>${escapeXml(code)}</Code>` +
    `<Message>${escapeXml(message)}</Message></Error></Errors><RequestID>${requestId}</RequestID></Response>`
  );
}
