# dqa-mcu C runtime: include() this file, then add ${DQA_RUNTIME_SOURCES} to a
# target and ${DQA_RUNTIME_INCLUDE_DIR} to its include directories.
set(DQA_RUNTIME_DIR "${CMAKE_CURRENT_LIST_DIR}")
set(DQA_RUNTIME_INCLUDE_DIR "${DQA_RUNTIME_DIR}/include")
set(DQA_RUNTIME_SOURCES
  "${DQA_RUNTIME_DIR}/src/dqa_reader.c"
  "${DQA_RUNTIME_DIR}/src/dqa_writer.c"
  "${DQA_RUNTIME_DIR}/src/dqa_window.c"
  "${DQA_RUNTIME_DIR}/src/dqa_conv2d.c"
  "${DQA_RUNTIME_DIR}/src/dqa_add.c"
  "${DQA_RUNTIME_DIR}/src/dqa_pool.c"
  "${DQA_RUNTIME_DIR}/src/dqa_avgpool.c"
  "${DQA_RUNTIME_DIR}/src/dqa_maxpool.c"
  "${DQA_RUNTIME_DIR}/src/dqa_concat.c"
  "${DQA_RUNTIME_DIR}/src/dqa_upsample_nearest.c"
  "${DQA_RUNTIME_DIR}/src/dqa_upsample_bilinear.c"
  "${DQA_RUNTIME_DIR}/src/dqa_depth_to_space.c"
  "${DQA_RUNTIME_DIR}/src/dqa_mul.c"
  "${DQA_RUNTIME_DIR}/src/dqa_activation.c"
  # TFLite-exact int8 mode (dqa_runtime_s8.h)
  "${DQA_RUNTIME_DIR}/src/dqa_conv2d_s8.c"
  "${DQA_RUNTIME_DIR}/src/dqa_depthwise_conv2d_s8.c"
  "${DQA_RUNTIME_DIR}/src/dqa_fully_connected_s8.c"
  "${DQA_RUNTIME_DIR}/src/dqa_add_s8.c"
  "${DQA_RUNTIME_DIR}/src/dqa_avgpool_s8.c"
  "${DQA_RUNTIME_DIR}/src/dqa_maxpool_s8.c"
  "${DQA_RUNTIME_DIR}/src/dqa_mean_s8.c"
  "${DQA_RUNTIME_DIR}/src/dqa_softmax_s8.c"
  "${DQA_RUNTIME_DIR}/src/dqa_pad_s8.c"
  "${DQA_RUNTIME_DIR}/src/dqa_concat_s8.c"
  "${DQA_RUNTIME_DIR}/src/dqa_transpose_conv_s8.c"
  "${DQA_RUNTIME_DIR}/src/dqa_mul_s8.c"
  "${DQA_RUNTIME_DIR}/src/dqa_leaky_relu_s8.c"
  "${DQA_RUNTIME_DIR}/src/dqa_hard_swish_s8.c"
  "${DQA_RUNTIME_DIR}/src/dqa_lookup_s8.c"
  "${DQA_RUNTIME_DIR}/src/dqa_resize_nearest_s8.c"
  "${DQA_RUNTIME_DIR}/src/dqa_resize_bilinear_s8.c"
  "${DQA_RUNTIME_DIR}/src/dqa_depth_to_space_s8.c"
)
