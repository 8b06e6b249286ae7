# The CANN-shaped install layout (component "cann"), beside the native lib/ + include/moe_ep install:
#   <prefix>/latest/include/{acl,aclnn,hccl,aclnnop}   the CANN-compatible headers
#   <prefix>/latest/lib64/libmoe_ep_cann.so*           the C API library (libmoe_ep_cann)
#   <prefix>/latest/lib64/lib{ascendcl,hccl,nnopbase,opapi,op_common}.so -> libmoe_ep_cann.so, and the names the
#                                                      vendor's operator samples also link (opapi_math,
#                                                      opapi_transformer, hccl_fwk, c_sec: names only; moe_ep
#                                                      provides none of securec's functions)
#   <prefix>/latest/bin/setenv.bash                    puts latest/lib64 on LD_LIBRARY_PATH
# plus forwarding headers at the source-tree-relative paths that the documented samples include
# ("../op_host/op_api/aclnn_X.h" and "../../moe_distribute_X/op_host/op_api/aclnn_X.h"), so that the
# documented line `g++ demo.cpp -I$P/latest/include -I$P/latest/include/aclnnop -L$P/latest/lib64
# -lascendcl -lnnopbase -lopapi -lop_common -lpthread -lhccl` builds them unchanged.
set(_cann_root latest)
set(_cann_stage ${PROJECT_BINARY_DIR}/cann_install)  # generated files, installed from here
file(MAKE_DIRECTORY ${_cann_stage}/lib64 ${_cann_stage}/forward)

install(TARGETS moe_ep_cann LIBRARY DESTINATION ${_cann_root}/lib64 COMPONENT cann)
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/acl ${PROJECT_SOURCE_DIR}/include/aclnn
                  ${PROJECT_SOURCE_DIR}/include/hccl ${PROJECT_SOURCE_DIR}/include/aclnnop
        DESTINATION ${_cann_root}/include COMPONENT cann)

# The CANN library names: relative symlinks to the development name of the one real library.
foreach(_lib ascendcl hccl nnopbase opapi op_common opapi_math opapi_transformer hccl_fwk c_sec)
  file(CREATE_LINK libmoe_ep_cann.so ${_cann_stage}/lib64/lib${_lib}.so SYMBOLIC)
  install(FILES ${_cann_stage}/lib64/lib${_lib}.so DESTINATION ${_cann_root}/lib64 COMPONENT cann)
endforeach()

# Forwarding headers for every operator header, at the two source-tree-relative paths.
file(GLOB _op_headers RELATIVE ${PROJECT_SOURCE_DIR}/include/aclnnop
     CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/include/aclnnop/aclnn_*.h)
foreach(_header IN LISTS _op_headers)
  string(REGEX REPLACE "^aclnn_(.*)\\.h$" "\\1" _op ${_header})  # moe_distribute_dispatch_v2
  set(MOE_EP_FORWARD_TARGET "aclnnop/${_header}")
  configure_file(${PROJECT_SOURCE_DIR}/cmake/cann_forward_header.h.in ${_cann_stage}/forward/${_header} @ONLY)
  install(FILES ${_cann_stage}/forward/${_header} DESTINATION ${_cann_root}/include/op_host/op_api COMPONENT cann)
  install(FILES ${_cann_stage}/forward/${_header} DESTINATION ${_cann_root}/${_op}/op_host/op_api COMPONENT cann)
endforeach()

install(PROGRAMS ${PROJECT_SOURCE_DIR}/cmake/setenv.bash DESTINATION ${_cann_root}/bin COMPONENT cann)
