/**
 * "Import" in the Profiles pane, run on main's handlers without the page:
 * profiles come from ~/.aws/credentials and ~/.aws/config as the AWS SDK's
 * own loader reads them, each secret goes to the keychain and nowhere else,
 * and a file that cannot be read is refused in plain words. The page's side
 * of Import is in settings-window.test.ts.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fromIni } from '@aws-sdk/credential-providers';
import { IpcChannel, type IpcHandlers } from '../main/ipc-contract.js';
import { SettingsActionError } from '../main/ipc-validate.js';
import { MemorySecretStore } from '../main/secret-store.js';
import { awsSharedFiles } from '../main/settings/aws-shared-files.js';
import { createSettingsHandlers } from '../main/settings-handlers.js';
import { SettingsStore } from '../main/settings-store.js';
import { tempDir } from './helpers/processes.js';
import { TestStatusSource } from './helpers/settings-page.js';

const folders: string[] = [];

after(async () => {
  for (const dir of folders) await rm(dir, { recursive: true, force: true });
});

interface Setup {
  home: string;
  credentialsFile: string;
  configFile: string;
  handlers: IpcHandlers;
  secrets: MemorySecretStore;
  settings: SettingsStore;
  dispose(): void;
}

/** A home folder with the given ~/.aws files (undefined: absent), and handlers reading them. */
async function setup(files: { credentials?: string; config?: string }, options: { env?: NodeJS.ProcessEnv; locate?: 'paths' | 'env' } = {}): Promise<Setup> {
  const home = await tempDir('home');
  folders.push(home);
  await mkdir(path.join(home, '.aws'));
  await mkdir(path.join(home, 'settings'));
  const credentialsFile = path.join(home, '.aws', 'credentials');
  const configFile = path.join(home, '.aws', 'config');
  if (files.credentials !== undefined) await writeFile(credentialsFile, files.credentials);
  if (files.config !== undefined) await writeFile(configFile, files.config);
  const settings = SettingsStore.open({ directory: path.join(home, 'settings') });
  const secrets = new MemorySecretStore();
  const { handlers, dispose } = createSettingsHandlers({
    settings,
    secrets,
    statuses: new TestStatusSource(),
    caches: {
      cacheDirectory: () => { throw new Error('import touches no cache'); },
      clearCache: async () => { throw new Error('import touches no cache'); },
    },
    createS3Client: () => {
      throw new Error('import sends no S3 request');
    },
    dialog: { chooseFolder: async () => undefined },
    emit: () => undefined,
    homeDir: home,
    // Never the real AWS_* variables of whoever runs the tests.
    env: options.env ?? {},
  });
  return { home, credentialsFile, configFile, handlers, secrets, settings, dispose };
}

const lines = (...l: string[]): string => l.join('\n') + '\n';

/** Each imported profile holds what the SDK itself resolves for that profile name from the same files. */
async function assertAsTheSdkReads(ui: Setup, names: string[]): Promise<void> {
  for (const name of names) {
    const sdk = await fromIni({ profile: name, filepath: ui.credentialsFile, configFilepath: ui.configFile, ignoreCache: true })();
    assert.equal(ui.settings.get().profiles.find((p) => p.name === name)?.accessKeyId, sdk.accessKeyId, name);
    assert.equal(await ui.secrets.get(name), sdk.secretAccessKey, name);
  }
}

describe('importing profiles from ~/.aws', () => {
  test('a profile from ~/.aws/credentials becomes a profile with its secret in the keychain only', async () => {
    const ui = await setup({
      credentials: lines('[default]', 'aws_access_key_id = AKIADEFAULT', 'aws_secret_access_key = default-secret-Zk18', 'region = ch-dk-2'),
    });
    const result = await ui.handlers[IpcChannel.ImportProfiles]();
    assert.deepEqual(result, { file: '~/.aws/credentials', imported: ['default'], skipped: [] });
    assert.deepEqual(ui.settings.get().profiles, [{ name: 'default', accessKeyId: 'AKIADEFAULT' }]);
    assert.equal(await ui.secrets.get('default'), 'default-secret-Zk18');
    assert.equal((await readFile(ui.settings.path, 'utf8')).includes('default-secret-Zk18'), false);
    ui.dispose();
  });

  test('a [profile x] section of ~/.aws/config imports as x, merged with [x] of the credentials file, which wins', async () => {
    const ui = await setup({
      credentials: lines(
        '[both]',
        'aws_access_key_id = AKIAFROMCREDENTIALS',
      ),
      config: lines(
        '[default]',
        'region = ch-gva-2',
        '',
        '[profile only-config]',
        'aws_access_key_id = AKIAONLYCONFIG',
        'aws_secret_access_key = only-config-secret',
        '',
        '[profile both]',
        'aws_access_key_id = AKIAFROMCONFIG',
        'aws_secret_access_key = both-secret-from-config',
        '',
        // Not "profile x": the SDK reads no profile from this section of the config file.
        '[ignored]',
        'aws_access_key_id = AKIAIGNORED',
        'aws_secret_access_key = ignored-secret',
        '',
        '[sso-session corp]',
        'sso_start_url = https://corp.example.com/start',
        '',
        '[profile temp]',
        'aws_access_key_id = ASIATEMP',
        'aws_secret_access_key = temp-secret',
        'aws_session_token = token',
      ),
    });
    const result = await ui.handlers[IpcChannel.ImportProfiles]();
    assert.deepEqual(result, {
      file: '~/.aws/credentials and ~/.aws/config',
      imported: ['both', 'only-config'],
      skipped: [
        { name: 'default', reason: 'no aws_access_key_id and aws_secret_access_key' },
        { name: 'temp', reason: 'temporary credentials (aws_session_token) expire; not imported' },
      ],
    });
    assert.deepEqual(ui.settings.get().profiles, [
      { name: 'both', accessKeyId: 'AKIAFROMCREDENTIALS' },
      { name: 'only-config', accessKeyId: 'AKIAONLYCONFIG' },
    ]);
    assert.equal(await ui.secrets.get('both'), 'both-secret-from-config');
    assert.equal(await ui.secrets.get('only-config'), 'only-config-secret');
    assert.equal(await ui.secrets.get('ignored'), undefined);
    await assertAsTheSdkReads(ui, result.imported);
    ui.dispose();
  });

  test('keys only in ~/.aws/config import when there is no credentials file', async () => {
    const ui = await setup({ config: lines('[profile exo]', 'aws_access_key_id = EXO1234567890', 'aws_secret_access_key = exo-secret-Qp27') });
    const result = await ui.handlers[IpcChannel.ImportProfiles]();
    assert.deepEqual(result, { file: '~/.aws/config', imported: ['exo'], skipped: [] });
    assert.equal(await ui.secrets.get('exo'), 'exo-secret-Qp27');
    ui.dispose();
  });

  test('comments and quotes are read as the SDK reads them', async () => {
    const ui = await setup({
      credentials: lines(
        '; a comment line',
        '# another',
        '[inline] # a comment after the header',
        'aws_access_key_id = AKIAINLINE ; a comment after a space',
        // No space before '#': part of the secret, as the SDK sends it.
        'aws_secret_access_key = abc#def;ghi',
        '',
        '[quoted]',
        'aws_access_key_id = AKIAQUOTED',
        // The SDK keeps quotes around a value; so does the keychain entry.
        'aws_secret_access_key = "quoted secret"',
      ),
      config: lines(
        "[profile 'single']",
        'aws_access_key_id = AKIASINGLE',
        'aws_secret_access_key = single-secret',
      ),
    });
    const result = await ui.handlers[IpcChannel.ImportProfiles]();
    assert.deepEqual(result.imported, ['inline', 'quoted', 'single']);
    assert.deepEqual(result.skipped, []);
    assert.deepEqual(ui.settings.get().profiles, [
      { name: 'inline', accessKeyId: 'AKIAINLINE' },
      { name: 'quoted', accessKeyId: 'AKIAQUOTED' },
      { name: 'single', accessKeyId: 'AKIASINGLE' },
    ]);
    assert.equal(await ui.secrets.get('inline'), 'abc#def;ghi');
    assert.equal(await ui.secrets.get('quoted'), '"quoted secret"');
    await assertAsTheSdkReads(ui, result.imported);
    ui.dispose();
  });

  test('AWS_SHARED_CREDENTIALS_FILE and AWS_CONFIG_FILE say where the files are, as for the SDK', async () => {
    const elsewhere = await tempDir('aws-files');
    folders.push(elsewhere);
    const credentials = path.join(elsewhere, 'creds.ini');
    const config = path.join(elsewhere, 'config.ini');
    await writeFile(credentials, lines('[from-env]', 'aws_access_key_id = AKIAENV', 'aws_secret_access_key = env-secret'));
    await writeFile(config, lines('[profile from-env-config]', 'aws_access_key_id = AKIAENVCONFIG', 'aws_secret_access_key = env-config-secret'));
    // The files under home would import too if the variables were ignored.
    const ui = await setup(
      { credentials: lines('[home]', 'aws_access_key_id = AKIAHOME', 'aws_secret_access_key = home-secret') },
      { env: { AWS_SHARED_CREDENTIALS_FILE: credentials, AWS_CONFIG_FILE: config } },
    );
    assert.equal((await ui.handlers[IpcChannel.GetSnapshot]()).credentialsFile, credentials);
    const result = await ui.handlers[IpcChannel.ImportProfiles]();
    assert.deepEqual(result, { file: `${credentials} and ${config}`, imported: ['from-env', 'from-env-config'], skipped: [] });
    assert.equal(await ui.secrets.get('from-env-config'), 'env-config-secret');
    ui.dispose();
  });

  test('where the files are: a given path, else the variable when not empty, else under home (~/ expanded)', () => {
    const home = '/home/ada';
    assert.deepEqual(awsSharedFiles({}, {}, home), { credentials: '/home/ada/.aws/credentials', config: '/home/ada/.aws/config' });
    assert.deepEqual(awsSharedFiles({}, { AWS_SHARED_CREDENTIALS_FILE: '', AWS_CONFIG_FILE: '' }, home), { credentials: '/home/ada/.aws/credentials', config: '/home/ada/.aws/config' });
    assert.deepEqual(awsSharedFiles({}, { AWS_SHARED_CREDENTIALS_FILE: '~/keys/creds', AWS_CONFIG_FILE: '/etc/aws/config' }, home), { credentials: '/home/ada/keys/creds', config: '/etc/aws/config' });
    assert.deepEqual(
      awsSharedFiles({ credentialsFile: '/tmp/c', configFile: '/tmp/k' }, { AWS_SHARED_CREDENTIALS_FILE: '/x', AWS_CONFIG_FILE: '/y' }, home),
      { credentials: '/tmp/c', config: '/tmp/k' },
    );
  });

  test('no file at all is NotFound; a file that cannot be read is refused with its errno', async () => {
    const none = await setup({});
    await assert.rejects(none.handlers[IpcChannel.ImportProfiles](), (err: unknown) => {
      assert.ok(err instanceof SettingsActionError);
      assert.equal(err.code, 'NotFound');
      assert.equal(err.message, 'There is no credentials file at ~/.aws/credentials.');
      return true;
    });
    none.dispose();

    // A folder in the file's place: unreadable even for root, which the test may run as.
    for (const which of ['credentials', 'config'] as const) {
      const ui = await setup(which === 'credentials' ? { config: lines('[profile a]', 'aws_access_key_id = AKIAA', 'aws_secret_access_key = a-secret') } : { credentials: lines('[a]', 'aws_access_key_id = AKIAA', 'aws_secret_access_key = a-secret') });
      await mkdir(path.join(ui.home, '.aws', which));
      await assert.rejects(ui.handlers[IpcChannel.ImportProfiles](), (err: unknown) => {
        assert.ok(err instanceof SettingsActionError);
        assert.equal(err.code, 'Refused');
        assert.equal(err.message, `~/.aws/${which} cannot be read (EISDIR).`);
        return true;
      });
      assert.deepEqual(ui.settings.get().profiles, [], 'nothing is imported from the other file either');
      ui.dispose();
    }
  });
});
