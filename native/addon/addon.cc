// Node binding of the CAPA C core (native/core): pinned sockets and interface
// addresses, nf_tables set elements in bulk; and the file-capability check of capa-run. Argument checking lives here so the C core can trust its input;
// failures become Node-style errors (.code, .errno, .syscall) as libuv's are.
#include <napi.h>
#include <uv.h>

#include <arpa/inet.h>
#include <malloc.h>
#include <net/if.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdint>
#include <functional>
#include <string>

extern "C" {
#include "../core/address_sweep.h"
#include "../core/netlink.h"
#include "../core/nft_set.h"
#include "../core/pin.h"
}

namespace {

struct Address {
  int family = 0;
  uint8_t bytes[16] = {};
  std::string text;
  unsigned HostPrefix() const { return family == AF_INET ? 32 : 128; }
};

[[noreturn]] void ThrowArg(Napi::Env env, const char* code, const std::string& message) {
  Napi::Error err = Napi::TypeError::New(env, message);
  err.Set("code", Napi::String::New(env, code));
  throw err;
}

Napi::Error SystemError(Napi::Env env, int negErrno, const char* syscall,
                        const std::string& message) {
  Napi::Error err = Napi::Error::New(env, message);
  err.Set("code", Napi::String::New(env, uv_err_name(negErrno)));
  err.Set("errno", Napi::Number::New(env, negErrno));
  err.Set("syscall", Napi::String::New(env, syscall));
  return err;
}

std::string ErrnoText(int negErrno) {
  return std::string(uv_err_name(negErrno)) + " (" + uv_strerror(negErrno) + ")";
}

std::string Quoted(const Napi::Value& value) {
  return value.IsString() ? "\"" + value.As<Napi::String>().Utf8Value() + "\""
                          : value.ToString().Utf8Value();
}

// Parses `text` as an address of `family` (AF_INET, AF_INET6, or 0 for either).
Address ParseAddress(Napi::Env env, const Napi::Value& value, const char* what,
                     int family) {
  if (!value.IsString()) {
    ThrowArg(env, "ERR_INVALID_ARG_TYPE",
             std::string("The \"") + what + "\" argument must be an IP address string");
  }
  Address addr;
  addr.text = value.As<Napi::String>().Utf8Value();
  for (int candidate : {AF_INET, AF_INET6}) {
    if ((family == 0 || family == candidate) &&
        inet_pton(candidate, addr.text.c_str(), addr.bytes) == 1) {
      addr.family = candidate;
      return addr;
    }
  }
  const char* expected = family == AF_INET ? "an IPv4" : family == AF_INET6 ? "an IPv6" : "an IP";
  ThrowArg(env, "ERR_INVALID_ARG_VALUE",
           std::string("The \"") + what + "\" argument must be " + expected +
               " address, got " + Quoted(value));
}

uint32_t ParseInteger(Napi::Env env, const Napi::Value& value, const char* what,
                      double max) {
  double n = value.IsNumber() ? value.As<Napi::Number>().DoubleValue() : -1;
  if (!value.IsNumber() || n < 0 || n > max || n != static_cast<double>(static_cast<uint64_t>(n))) {
    ThrowArg(env, "ERR_INVALID_ARG_VALUE",
             std::string("The \"") + what + "\" argument must be an integer from 0 to " +
                 std::to_string(static_cast<uint64_t>(max)) + ", got " + Quoted(value));
  }
  return static_cast<uint32_t>(n);
}

std::string ParseIfname(Napi::Env env, const Napi::Value& value, const char* what) {
  std::string name = value.IsString() ? value.As<Napi::String>().Utf8Value() : "";
  if (name.empty() || name.size() >= IFNAMSIZ || name.find('\0') != std::string::npos) {
    ThrowArg(env, "ERR_INVALID_ARG_VALUE",
             std::string("The \"") + what + "\" argument must be an interface name of 1 to " +
                 std::to_string(IFNAMSIZ - 1) + " characters, got " + Quoted(value));
  }
  return name;
}

int ParseFamily(Napi::Env env, const Napi::Value& value) {
  if (value.IsNumber() && value.As<Napi::Number>().DoubleValue() == 4) return AF_INET;
  if (value.IsNumber() && value.As<Napi::Number>().DoubleValue() == 6) return AF_INET6;
  ThrowArg(env, "ERR_INVALID_ARG_VALUE",
           "The \"options.family\" argument must be 4 or 6, got " + Quoted(value));
}

int ParseSocketType(Napi::Env env, const Napi::Value& value) {
  std::string type = value.IsString() ? value.As<Napi::String>().Utf8Value() : "";
  if (type == "tcp") return SOCK_STREAM;
  if (type == "udp") return SOCK_DGRAM;
  ThrowArg(env, "ERR_INVALID_ARG_VALUE",
           "The \"options.type\" argument must be 'tcp' or 'udp', got " + Quoted(value));
}

std::string Endpoint(const Address& addr, uint32_t port) {
  return addr.family == AF_INET6 ? "[" + addr.text + "]:" + std::to_string(port)
                                 : addr.text + ":" + std::to_string(port);
}

// Node's own wording for socket failures ("bind EADDRINUSE 127.0.0.1:80"),
// naming the socket option that failed and what to do about it. `where` is the
// endpoint, empty before the socket has an address.
std::string PinMessage(int rc, capa_pin_step step, const std::string& where,
                       const std::string& device) {
  const char* option = capa_pin_step_option(step);
  std::string message = std::string(capa_pin_step_syscall(step)) + (option ? std::string(" ") + option : "") +
                        " " + uv_err_name(rc) + (where.empty() ? "" : " " + where);
  if (rc == -EPERM && (step == CAPA_STEP_MARK || step == CAPA_STEP_BINDTODEVICE)) {
    // Kernels before 5.7 also ask CAP_NET_RAW for SO_BINDTODEVICE.
    message += std::string(": ") + option + " needs " +
               (step == CAPA_STEP_MARK ? "CAP_NET_ADMIN" : "CAP_NET_RAW") +
               " (run as root or grant the capability)";
  } else if (rc == -ENODEV && step == CAPA_STEP_BINDTODEVICE) {
    message += ": no network interface named \"" + device + "\"";
  }
  return message;
}

[[noreturn]] void ThrowPin(Napi::Env env, int rc, capa_pin_step step, const Address* addr,
                           uint32_t port, const std::string& device) {
  Napi::Error err = SystemError(env, rc, capa_pin_step_syscall(step),
                                PinMessage(rc, step, addr ? Endpoint(*addr, port) : "", device));
  if (addr) {
    err.Set("address", Napi::String::New(env, addr->text));
    err.Set("port", Napi::Number::New(env, port));
  }
  throw err;
}

Napi::Object OptionsObject(const Napi::CallbackInfo& info) {
  if (!info[0].IsObject()) {
    ThrowArg(info.Env(), "ERR_INVALID_ARG_TYPE", "The \"options\" argument must be an object");
  }
  return info[0].As<Napi::Object>();
}

// What a socket is opened with: {family, type, device?, mark?}. `device`
// backs opts.device, so it lives as long as the request.
struct OpenRequest {
  int family = 0;
  int type = 0;
  std::string device;
  capa_pin_opts opts = {};
};

void ParseOpenRequest(Napi::Env env, const Napi::Object& options, OpenRequest* req) {
  req->family = ParseFamily(env, options.Get("family"));
  req->type = ParseSocketType(env, options.Get("type"));
  if (!options.Get("device").IsUndefined()) {
    req->device = ParseIfname(env, options.Get("device"), "options.device");
    req->opts.device = req->device.c_str();
  }
  if (!options.Get("mark").IsUndefined()) {
    req->opts.mark = ParseInteger(env, options.Get("mark"), "options.mark", 4294967295.0);
    req->opts.has_mark = 1;
  }
}

// openPinnable({family, type, device?, mark?}) -> fd of a socket ready for
// bindPinned: everything a pinned socket needs but its address.
Napi::Value OpenPinnable(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  OpenRequest req;
  ParseOpenRequest(env, OptionsObject(info), &req);
  int fd = -1;
  capa_pin_step step = CAPA_STEP_NONE;
  int rc = capa_pin_open(req.family, req.type, &req.opts, &fd, &step);
  if (rc < 0) ThrowPin(env, rc, step, nullptr, 0, req.device);
  return Napi::Number::New(env, fd);
}

// bindPinned(fd, address, port): binds a socket from openPinnable to the
// allocation; the family is the address's. The fd stays open on failure.
Napi::Value BindPinned(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t fd = ParseInteger(env, info[0], "fd", 2147483647.0);
  Address addr = ParseAddress(env, info[1], "address", 0);
  uint32_t port = ParseInteger(env, info[2], "port", 65535);
  capa_pin_step step = CAPA_STEP_NONE;
  int rc = capa_pin_bind(static_cast<int>(fd), addr.family, addr.bytes, static_cast<uint16_t>(port), &step);
  if (rc < 0) ThrowPin(env, rc, step, &addr, port, "");
  return env.Undefined();
}

// The arguments every address call takes: (ifname, address).
struct AddrRequest {
  std::string ifname;
  Address addr;
};

AddrRequest ParseAddrRequest(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  AddrRequest req;
  req.ifname = ParseIfname(env, info[0], "ifname");
  req.addr = ParseAddress(env, info[1], "address", 0);
  return req;
}

Napi::Error NetlinkError(Napi::Env env, int rc, const std::string& action) {
  if (rc == -EPERM) {
    return SystemError(env, rc, "netlink", action + " needs CAP_NET_ADMIN (run as root or grant the capability)");
  }
  return SystemError(env, rc, "netlink", action + " failed: " + ErrnoText(rc));
}

// Runs one netlink call on a thread of the pool (an IPv6 add waits up to 500 ms for the kernel)
// and settles a promise: a negative errno rejects as NetlinkError, else `result` maps the code.
class NetlinkWorker : public Napi::AsyncWorker {
 public:
  using Call = std::function<int()>;
  using Result = Napi::Value (*)(Napi::Env, int);

  NetlinkWorker(Napi::Env env, Call call, std::string action, Result result)
      : Napi::AsyncWorker(env), call_(std::move(call)), action_(std::move(action)), result_(result), deferred_(env) {}

  static Napi::Value Queue(Napi::Env env, Call call, std::string action, Result result) {
    auto* worker = new NetlinkWorker(env, std::move(call), std::move(action), result);
    Napi::Promise promise = worker->deferred_.Promise();
    worker->Napi::AsyncWorker::Queue();
    return promise;
  }

 protected:
  void Execute() override { rc_ = call_(); }
  void OnOK() override {
    if (rc_ < 0) deferred_.Reject(NetlinkError(Env(), rc_, action_).Value());
    else deferred_.Resolve(result_(Env(), rc_));
  }
  void OnError(const Napi::Error& err) override { deferred_.Reject(err.Value()); }

 private:
  Call call_;
  std::string action_;
  Result result_;
  Napi::Promise::Deferred deferred_;
  int rc_ = 0;
};

Napi::Value Nothing(Napi::Env env, int) { return env.Undefined(); }
Napi::Value IsOne(Napi::Env env, int rc) { return Napi::Boolean::New(env, rc == 1); }

std::string Described(const AddrRequest& req, const char* verb, const char* preposition) {
  return std::string(verb) + " " + req.addr.text + "/" + std::to_string(req.addr.HostPrefix()) +
         " " + preposition + " " + req.ifname;
}

// addressAdd(ifname, address) -> Promise: adds address/32 (/128), for IPv6 waiting (at most
// 500 ms) until it is local; already there is fine.
Napi::Value AddressAdd(const Napi::CallbackInfo& info) {
  AddrRequest req = ParseAddrRequest(info);
  return NetlinkWorker::Queue(info.Env(), [req] {
    return capa_nl_addr_add(req.ifname.c_str(), req.addr.family, req.addr.bytes, req.addr.HostPrefix());
  }, Described(req, "adding", "to"), Nothing);
}

// addressRemove(ifname, address) -> Promise: removes address/32 (/128).
Napi::Value AddressRemove(const Napi::CallbackInfo& info) {
  AddrRequest req = ParseAddrRequest(info);
  return NetlinkWorker::Queue(info.Env(), [req] {
    return capa_nl_addr_del(req.ifname.c_str(), req.addr.family, req.addr.bytes, req.addr.HostPrefix());
  }, Described(req, "removing", "from"), Nothing);
}

// addressCheck(ifname, address) -> Promise<boolean>: whether the address is on that interface.
Napi::Value AddressCheck(const Napi::CallbackInfo& info) {
  AddrRequest req = ParseAddrRequest(info);
  return NetlinkWorker::Queue(info.Env(), [req] {
    return capa_nl_addr_check(req.ifname.c_str(), req.addr.family, req.addr.bytes);
  }, "checking " + req.addr.text + " on " + req.ifname, IsOne);
}

// sweepAddresses(ifname[, idleMs]) -> how many addresses it took off: one look of the address
// sweep (native/core/address_sweep.h) at the CAPA addresses of that interface.
Napi::Value SweepAddresses(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string ifname = ParseIfname(env, info[0], "ifname");
  uint32_t idle_ms = info[1].IsUndefined() ? CAPA_ADDRESS_IDLE_MS : ParseInteger(env, info[1], "idleMs", UINT32_MAX);
  int rc = capa_sweep_addresses(ifname.c_str(), idle_ms);
  if (rc < 0) throw NetlinkError(env, rc, "tidying the CAPA addresses of " + ifname);
  return Napi::Number::New(env, rc);
}

// isLocalAddress(address) -> Promise<boolean>: whether the kernel delivers that address locally.
Napi::Value IsLocalAddress(const Napi::CallbackInfo& info) {
  Address addr = ParseAddress(info.Env(), info[0], "address", 0);
  return NetlinkWorker::Queue(info.Env(), [addr] { return capa_nl_addr_is_local(addr.family, addr.bytes); },
                              "looking up the route of " + addr.text, IsOne);
}

// setMmapThreshold(bytes) -> whether glibc took it: allocations from `bytes` up are mmapped and
// go back to the kernel when freed. A fixed threshold also stops glibc raising it after each
// large free, which otherwise keeps such blocks in its heaps.
Napi::Value SetMmapThreshold(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t bytes = ParseInteger(env, info[0], "bytes", 32 * 1024 * 1024);
  return Napi::Boolean::New(env, mallopt(M_MMAP_THRESHOLD, static_cast<int>(bytes)) == 1);
}

// nftOpen([netns]) -> fd of a NETLINK_NETFILTER socket, in network namespace /run/netns/<netns> if given.
Napi::Value NftOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path;
  if (!info[0].IsUndefined()) {
    std::string name = info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
    if (name.empty() || name.find('/') != std::string::npos || name.find('\0') != std::string::npos || name[0] == '.') {
      ThrowArg(env, "ERR_INVALID_ARG_VALUE", "The \"netns\" argument must be a network namespace name, got " + Quoted(info[0]));
    }
    path = "/run/netns/" + name;
  }
  int fd = capa_nft_open(path.empty() ? nullptr : path.c_str());
  if (fd < 0) {
    throw SystemError(env, fd, "netlink", "cannot open an nf_tables netlink socket" + (path.empty() ? "" : " in " + path) + ": " + ErrnoText(fd));
  }
  return Napi::Number::New(env, fd);
}

// The set argument of nftApply / nftDump: { table, name, keyLength, map }.
struct NftSet {
  std::string table, name;
  uint32_t key_len = 0;
  bool is_map = false;

  NftSet(Napi::Env env, const Napi::Value& value) {
    if (!value.IsObject()) ThrowArg(env, "ERR_INVALID_ARG_TYPE", "The \"set\" argument must be an object");
    Napi::Object o = value.As<Napi::Object>();
    Napi::Value table_value = o.Get("table"), name_value = o.Get("name");
    if (!table_value.IsString() || !name_value.IsString()) {
      ThrowArg(env, "ERR_INVALID_ARG_TYPE", "The \"set.table\" and \"set.name\" arguments must be strings");
    }
    table = table_value.As<Napi::String>().Utf8Value();
    name = name_value.As<Napi::String>().Utf8Value();
    key_len = ParseInteger(env, o.Get("keyLength"), "set.keyLength", 64);
    is_map = o.Get("map").ToBoolean();
    if (key_len == 0 || key_len % 4 != 0) {
      ThrowArg(env, "ERR_INVALID_ARG_VALUE", "The \"set.keyLength\" argument must be a multiple of 4 from 4 to 64");
    }
  }

  capa_nft_set View() const { return {table.c_str(), name.c_str(), key_len, is_map ? 1 : 0}; }
  std::string Described() const { return "inet " + table + " " + name; }
};

// Runs one bulk call off the JavaScript thread; the records buffer is held until it is done.
class NftWorker : public Napi::AsyncWorker {
 public:
  NftWorker(Napi::Env env, int fd, NftSet set) : Napi::AsyncWorker(env), fd_(fd), set_(std::move(set)), deferred_(env) {}
  Napi::Promise Promise() const { return deferred_.Promise(); }

 protected:
  void OnOK() override {
    if (rc_ < 0) {
      Napi::Error err = SystemError(Env(), rc_, "netlink", What() + " " + set_.Described() + ": " + ErrnoText(rc_));
      Decorate(err);
      deferred_.Reject(err.Value());
      return;
    }
    deferred_.Resolve(Result());
  }
  void OnError(const Napi::Error& err) override { deferred_.Reject(err.Value()); }
  virtual std::string What() const = 0;
  virtual void Decorate(Napi::Error&) const {}
  virtual Napi::Value Result() = 0;

  int fd_;
  NftSet set_;
  int rc_ = 0;
  Napi::Promise::Deferred deferred_;
};

class NftApplyWorker : public NftWorker {
 public:
  NftApplyWorker(Napi::Env env, int fd, NftSet set, capa_nft_op op, Napi::Buffer<uint8_t> records, bool skip)
      : NftWorker(env, fd, std::move(set)), op_(op), data_(records.Data()), count_(records.Length() / capa_nft_record_len(&view_)),
        skip_(skip), keep_(Napi::Persistent(records.As<Napi::Object>())) {}

 private:
  void Execute() override {
    capa_nft_set s = set_.View();
    rc_ = capa_nft_apply(fd_, &s, op_, data_, count_, skip_ ? 1 : 0, &result_);
  }
  std::string What() const override { return op_ == CAPA_NFT_ADD ? "adding elements to" : "deleting elements from"; }
  void Decorate(Napi::Error& err) const override { err.Set("applied", Napi::Number::New(Env(), static_cast<double>(result_.applied))); }
  Napi::Value Result() override {
    Napi::Object o = Napi::Object::New(Env());
    o.Set("applied", Napi::Number::New(Env(), static_cast<double>(result_.applied)));
    o.Set("conflicts", Napi::Number::New(Env(), static_cast<double>(result_.conflicts)));
    return o;
  }

  capa_nft_set view_ = set_.View();
  capa_nft_op op_;
  const uint8_t* data_;
  size_t count_;
  bool skip_;
  Napi::ObjectReference keep_;
  capa_nft_apply_result result_{};
};

class NftDumpWorker : public NftWorker {
 public:
  using NftWorker::NftWorker;
  ~NftDumpWorker() override { free(records_); }

 private:
  void Execute() override {
    capa_nft_set s = set_.View();
    rc_ = capa_nft_dump(fd_, &s, &records_, &count_);
  }
  std::string What() const override { return "reading the elements of"; }
  Napi::Value Result() override {
    capa_nft_set s = set_.View();
    return Napi::Buffer<uint8_t>::Copy(Env(), records_ == nullptr ? reinterpret_cast<const uint8_t*>("") : records_, count_ * capa_nft_record_len(&s));
  }

  uint8_t* records_ = nullptr;
  size_t count_ = 0;
};

int ParseFd(Napi::Env env, const Napi::Value& value) { return static_cast<int>(ParseInteger(env, value, "fd", INT32_MAX)); }

// nftTableComment(fd, table) -> the comment of inet table `table`; undefined when it has none or does not exist.
Napi::Value NftTableComment(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ParseFd(env, info[0]);
  if (!info[1].IsString()) ThrowArg(env, "ERR_INVALID_ARG_TYPE", "The \"table\" argument must be a string");
  std::string table = info[1].As<Napi::String>().Utf8Value();
  char comment[256];
  int rc = capa_nft_table_comment(fd, table.c_str(), comment, sizeof comment);
  if (rc == -ENOENT || rc == -ENODATA) return env.Undefined();
  if (rc < 0) throw SystemError(env, rc, "netlink", "reading table inet " + table + ": " + ErrnoText(rc));
  return Napi::String::New(env, comment);
}

// nftApply(fd, set, 'add' | 'delete', records, skipConflicts) -> Promise<{ applied, conflicts }>.
Napi::Value NftApply(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ParseFd(env, info[0]);
  NftSet set(env, info[1]);
  std::string op = info[2].IsString() ? info[2].As<Napi::String>().Utf8Value() : "";
  if (op != "add" && op != "delete") ThrowArg(env, "ERR_INVALID_ARG_VALUE", "The \"op\" argument must be 'add' or 'delete', got " + Quoted(info[2]));
  if (!info[3].IsBuffer()) ThrowArg(env, "ERR_INVALID_ARG_TYPE", "The \"records\" argument must be a Buffer");
  Napi::Buffer<uint8_t> records = info[3].As<Napi::Buffer<uint8_t>>();
  capa_nft_set view = set.View();
  if (records.Length() % capa_nft_record_len(&view) != 0) {
    ThrowArg(env, "ERR_INVALID_ARG_VALUE", "The \"records\" argument must hold whole records of " + std::to_string(capa_nft_record_len(&view)) + " bytes");
  }
  auto* worker = new NftApplyWorker(env, fd, std::move(set), op == "add" ? CAPA_NFT_ADD : CAPA_NFT_DELETE, records, info[4].ToBoolean());
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

// nftDump(fd, set) -> Promise<Buffer> of every element's record. The kernel's cost grows with the square of the set's size.
Napi::Value NftDump(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ParseFd(env, info[0]);
  auto* worker = new NftDumpWorker(env, fd, NftSet(env, info[1]));
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("openPinnable", Napi::Function::New(env, OpenPinnable, "openPinnable"));
  exports.Set("bindPinned", Napi::Function::New(env, BindPinned, "bindPinned"));
  exports.Set("addressAdd", Napi::Function::New(env, AddressAdd, "addressAdd"));
  exports.Set("addressRemove", Napi::Function::New(env, AddressRemove, "addressRemove"));
  exports.Set("addressCheck", Napi::Function::New(env, AddressCheck, "addressCheck"));
  exports.Set("isLocalAddress", Napi::Function::New(env, IsLocalAddress, "isLocalAddress"));
  exports.Set("sweepAddresses", Napi::Function::New(env, SweepAddresses, "sweepAddresses"));
  exports.Set("setMmapThreshold", Napi::Function::New(env, SetMmapThreshold, "setMmapThreshold"));
  exports.Set("nftOpen", Napi::Function::New(env, NftOpen, "nftOpen"));
  exports.Set("nftApply", Napi::Function::New(env, NftApply, "nftApply"));
  exports.Set("nftDump", Napi::Function::New(env, NftDump, "nftDump"));
  exports.Set("nftTableComment", Napi::Function::New(env, NftTableComment, "nftTableComment"));
  return exports;
}

}  // namespace

NODE_API_MODULE(capa, Init)
