// Types for the parts of fuse-native (2.2.x, CommonJS, untyped) we use.
declare module 'fuse-native' {
  type Cb0 = (err: number) => void;
  export interface FuseStat {
    mode: number; uid: number; gid: number; size: number; nlink: number;
    mtime: Date; atime: Date; ctime: Date; blocks?: number; blksize?: number; ino?: number; dev?: number; rdev?: number;
  }
  export interface FuseOps {
    init?(cb: Cb0): void;
    getattr?(path: string, cb: (err: number, stat?: FuseStat) => void): void;
    fgetattr?(path: string, fd: number, cb: (err: number, stat?: FuseStat) => void): void;
    readdir?(path: string, cb: (err: number, names?: string[], stats?: FuseStat[]) => void): void;
    open?(path: string, flags: number, cb: (err: number, fd?: number) => void): void;
    create?(path: string, mode: number, cb: (err: number, fd?: number) => void): void;
    read?(path: string, fd: number, buf: Buffer, len: number, pos: number, cb: (bytesOrErr: number) => void): void;
    write?(path: string, fd: number, buf: Buffer, len: number, pos: number, cb: (bytesOrErr: number) => void): void;
    flush?(path: string, fd: number, cb: Cb0): void;
    fsync?(path: string, datasync: number, fd: number, cb: Cb0): void;
    release?(path: string, fd: number, cb: Cb0): void;
    unlink?(path: string, cb: Cb0): void;
    mkdir?(path: string, mode: number, cb: Cb0): void;
    rmdir?(path: string, cb: Cb0): void;
    rename?(src: string, dest: string, cb: Cb0): void;
    link?(src: string, dest: string, cb: Cb0): void;
    symlink?(src: string, dest: string, cb: Cb0): void;
    readlink?(path: string, cb: (err: number, target?: string) => void): void;
    chmod?(path: string, mode: number, cb: Cb0): void;
    chown?(path: string, uid: number, gid: number, cb: Cb0): void;
    utimens?(path: string, atime: number, mtime: number, cb: Cb0): void;
    truncate?(path: string, size: number, cb: Cb0): void;
    ftruncate?(path: string, fd: number, size: number, cb: Cb0): void;
    mknod?(path: string, mode: number, dev: number, cb: Cb0): void;
    statfs?(path: string, cb: (err: number, st?: Record<string, number>) => void): void;
    getxattr?(path: string, name: string, position: number, cb: (err: number, value?: Buffer) => void): void;
    setxattr?(path: string, name: string, value: Buffer, position: number, flags: number, cb: Cb0): void;
    listxattr?(path: string, cb: (err: number, list?: string[]) => void): void;
    removexattr?(path: string, name: string, cb: Cb0): void;
  }
  export type OpTimeouts = { default?: number } & Record<string, number | false | undefined>;
  export interface FuseOptions {
    debug?: boolean; allowOther?: boolean; allowRoot?: boolean; autoUnmount?: boolean;
    maxRead?: number; fsname?: string; subtype?: string; entryTimeout?: number; attrTimeout?: number;
    force?: boolean; mkdir?: boolean; timeout?: number | false | OpTimeouts; defaultPermissions?: boolean;
  }
  class Fuse {
    constructor(mnt: string, ops: FuseOps, opts?: FuseOptions);
    readonly mnt: string;
    readonly opts: FuseOptions;
    mount(cb: (err: Error | null) => void): void;
    unmount(cb: (err: Error | null) => void): void;
    protected _fuseOptions(): string;
    static unmount(mnt: string, cb: (err: Error | null) => void): void;
  }
  export default Fuse;
}
