# moe_ep CANN-shaped environment: `source <prefix>/latest/bin/setenv.bash` (from any directory, any
# number of times). Like CANN's setenv.bash it sets ASCEND_TOOLKIT_HOME / ASCEND_HOME_PATH and puts
# latest/lib64 (libascendcl, libhccl, libnnopbase, libopapi, libop_common -> libmoe_ep_cann) first on
# LD_LIBRARY_PATH, unless it is there already (wherever it is).
_moe_ep_home="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export ASCEND_TOOLKIT_HOME="${_moe_ep_home}"
export ASCEND_HOME_PATH="${_moe_ep_home}"
case ":${LD_LIBRARY_PATH:-}:" in
  *":${_moe_ep_home}/lib64:"*) ;;
  *) export LD_LIBRARY_PATH="${_moe_ep_home}/lib64${LD_LIBRARY_PATH:+:${LD_LIBRARY_PATH}}" ;;
esac
unset _moe_ep_home
