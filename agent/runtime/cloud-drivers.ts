import 'reflect-metadata';
import { inject, injectable } from 'inversify';
import type { VisorConfig } from '../../core/config/load.js';
import { VisorError } from '../../core/errors.js';
import type { IaasDriver } from '../../core/iaas/port.js';
import type { Logger } from '../../core/logging/logger.js';
import type { SecretRegistry } from '../../core/logging/redact.js';
import { type IaasDriverFactory, ServiceIds } from '../../core/registry/ids.js';
import { type CloudDriverSource, RuntimeIds } from './services.js';

/**
 * Builds the driver of a configured cloud with its adapter plugin's factory, giving it the
 * validated options and a context (its name, the data folder, a logger, the secret registry).
 * Its dependencies are named by `@inject`: nothing relies on emitted type metadata.
 */
@injectable()
export class CloudDrivers implements CloudDriverSource {
  constructor(
    @inject(RuntimeIds.Config) private readonly config: VisorConfig,
    @inject(RuntimeIds.AdapterFactories) private readonly factories: ReadonlyMap<string, IaasDriverFactory>,
    @inject(ServiceIds.Logger) private readonly logger: Logger,
    @inject(ServiceIds.Secrets) private readonly secrets: SecretRegistry,
  ) {}

  async build(name: string): Promise<IaasDriver> {
    const cloud = this.config.clouds[name];
    if (!cloud) throw new VisorError('invalidInput', `no cloud named ${name} in the configuration`);
    const factory = this.factories.get(cloud.adapter);
    if (!factory) throw new VisorError('plugin', `no iaas plugin "${cloud.adapter}" is registered`);
    return factory.create(cloud.options, {
      name,
      dataDir: this.config.dataDir,
      logger: this.logger.child({ cloud: name }),
      secrets: this.secrets,
    });
  }
}
