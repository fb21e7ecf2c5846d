# Runner for rb> tasks: the Ruby twin of py_runner.py, same files and JSON contract (Digdag's runner.rb).
# Shipped next to the task, so it uses only the Ruby standard library (Ruby 2.7+).
#
# Usage: ruby runner.rb METHOD IN_JSON OUT_JSON [REQUIRE]
#   METHOD  "Klass.meth", "Mod::Klass.meth" (instance method if public, else called on the class as
#           Digdag's `send` does: private and inherited methods too, such as a top-level `def meth`),
#           or "meth" (a top-level method, called on Ruby's `main` object)
#   REQUIRE a project file to load first, e.g. "tasks/my_workflow" (the working directory is on
#           $LOAD_PATH before it is required, so this works the same locally, in Docker and on ECS)
require 'json'

# Digdag's constants (PARAMS, SUBTASK_CONFIG, EXPORT_PARAMS, STORE_PARAMS, STATE_PARAMS), defined
# by DigdagRunner.run before the user's code loads. They are the very hashes Digdag.env reads and
# writes: code that adds to DigdagEnv::STORE_PARAMS stores, as in Digdag.
module DigdagEnv
end

module Digdag
  class Env
    attr_reader :params, :subtask_config, :export_params, :store_params, :state_params

    def initialize(params)
      @params = params
      @subtask_config = {}
      @export_params = {}
      @store_params = {}
      @state_params = {}
      @subtask_index = 0
    end

    def export(params = {}, **kwargs)
      merge_into('export', @export_params, params, kwargs)
    end

    def store(params = {}, **kwargs)
      merge_into('store', @store_params, params, kwargs)
    end

    def set_state(params = {}, **kwargs)
      merge_into('set_state', @state_params, params, kwargs)
    end

    # Digdag's three forms, a task to run after this one as its child (+subtask0, +subtask1...):
    # add_subtask(params) with the whole task ({'rb>' => 'Klass.meth', ...}, or a group of '+name'
    # tasks), add_subtask(method_name, params = {}) for a top-level method, and
    # add_subtask(klass, method_name, params = {}).
    def add_subtask(*args, **kwargs)
      params = args.last.is_a?(Hash) ? args.pop : {}
      config = DigdagRunner.deep_stringify(params.merge(kwargs))
      case args.size
      when 0 then nil
      when 1 then config['rb>'] = args[0].to_s
      when 2 then config['rb>'] = "#{args[0]}.#{args[1]}"
      else raise ArgumentError, 'add_subtask(params), add_subtask(method_name, params) or ' \
                                'add_subtask(klass, method_name, params)'
      end
      begin
        JSON.generate(config)
      rescue StandardError => e
        raise TypeError, "Parameters must be serializable using JSON: #{e.message}"
      end
      @subtask_config["+subtask#{@subtask_index}"] = config
      @subtask_index += 1
    end

    private

    # Keys become symbols, as with Digdag's keyword-only store(**params), so that code reading
    # DigdagEnv::STORE_PARAMS[:key] finds them; output.json has them as strings.
    def merge_into(what, target, params, kwargs)
      merged = {}
      params.each { |k, v| merged[k.to_sym] = v }
      kwargs.each { |k, v| merged[k.to_sym] = v }
      merged.each do |key, value|
        unless json_value?(value)
          raise TypeError, "Digdag.env.#{what}: the value of '#{key}' is not JSON-serialisable " \
                           "(#{value.class}); store only String, Integer, Float, true/false, nil, Array and Hash values"
        end
      end
      target.merge!(merged)
    end

    def json_value?(value)
      case value
      when String, Integer, TrueClass, FalseClass, NilClass, Symbol then true
      when Float then value.finite?
      when Array then value.all? { |v| json_value?(v) }
      when Hash then value.all? { |k, v| (k.is_a?(String) || k.is_a?(Symbol)) && json_value?(v) }
      else false
      end
    end
  end

  def self.env
    @env
  end

  def self.env=(env)
    @env = env
  end
end

module DigdagRunner
  module_function

  def deep_stringify(value)
    case value
    when Hash then value.each_with_object({}) { |(k, v), h| h[k.to_s] = deep_stringify(v) }
    when Array then value.map { |v| deep_stringify(v) }
    when Symbol then value.to_s
    else value
    end
  end

  # Run the tasks env generated, here, in the order added (Digdag runs them as the task's children,
  # after it; with _parallel at once: here one after the other). Each sees the parent's params, what
  # the parent exported and stored, what earlier subtasks stored, and its own keys; what it stores
  # reaches the later ones and, as the parent's, the tasks after it. A generated group runs its
  # tasks in order. Only rb> tasks can run in this process: anything else fails the task.
  def run_subtasks(parent, params)
    ran = false
    parent.subtask_config.each do |name, config|
      next unless name.to_s.start_with?('+')

      ran = true
      run_generated(name.to_s, config, parent, params)
    end
    use_env(parent)
    parent.subtask_config.clear # they ran: nothing is left for the operator to run
    parent.export_params.clear if ran # applied to the children, which is all an export does
  end

  def run_generated(name, config, parent, params)
    raise ArgumentError, "generated subtask #{name} must be a Hash, got #{config.inspect[0, 200]}" unless config.is_a?(Hash)

    config = deep_stringify(config)
    child_params = params.merge(deep_stringify(parent.export_params)).merge(deep_stringify(parent.store_params))
    child_params = child_params.merge(config['_export']) if config['_export'].is_a?(Hash)
    operators = config.keys.select { |k| k.end_with?('>') }.sort
    children = config.select { |k, _| k.start_with?('+') }
    if !children.empty? && operators.empty?
      group = Digdag::Env.new(child_params) # the group's tasks store into it, in turn
      children.each { |child_name, child| run_generated("#{name}#{child_name}", child, group, child_params) }
      parent.store_params.merge!(group.store_params)
      return
    end
    unless operators == ['rb>'] && children.empty?
      raise ArgumentError, "generated subtask #{name} (#{JSON.generate(config)[0, 200]}): on Airflow, tasks " \
                           'generated with add_subtask run inside the generating task, and only rb> tasks ' \
                           'can: generate rb> tasks, or write the steps in the workflow'
    end
    child_params = child_params.merge(config.reject { |k, _| k.start_with?('_') || k == 'rb>' })
    child = Digdag::Env.new(child_params)
    use_env(child)
    puts "Running generated subtask #{name}: rb> #{config['rb>']}"
    callable, qualname = resolve(config['rb>'], child_params)
    args, kwargs = bind(callable, child_params, qualname)
    callable.call(*args, **kwargs)
    run_subtasks(child, child_params)
    parent.store_params.merge!(child.store_params)
  end

  def use_env(env)
    Digdag.env = env
    define_constants(env)
  end

  def deep_symbolize(value)
    case value
    when Hash then value.each_with_object({}) { |(k, v), h| h[k.to_sym] = deep_symbolize(v) }
    when Array then value.map { |v| deep_symbolize(v) }
    else value
    end
  end

  # Bind a method's parameters by name from params, as Digdag does.
  def bind(method, params, qualname)
    args = []
    kwargs = {}
    positional_open = true
    method.parameters.each do |kind, name|
      key = name.to_s
      case kind
      when :req
        raise ArgumentError, "Method '#{qualname}' requires parameter '#{key}' but not set" unless params.key?(key)
        args << params[key]
      when :opt
        # An optional positional can only be given if every one before it was given.
        positional_open &&= params.key?(key)
        args << params[key] if positional_open
      when :keyreq
        raise ArgumentError, "Method '#{qualname}' requires parameter '#{key}' but not set" unless params.key?(key)
        kwargs[name] = params[key]
      when :key
        kwargs[name] = params[key] if params.key?(key)
      when :keyrest
        deep_symbolize(params).each { |k, v| kwargs[k] = v unless kwargs.key?(k) }
      end
    end
    [args, kwargs]
  end

  def resolve(command, params)
    unless command.include?('.')
      # A top-level method is a private method of `main`, where Digdag calls it with `send`; taking it
      # from there also keeps this module's own helpers (`run`, ...) from shadowing the user's.
      return [method_of(TOPLEVEL_BINDING.receiver, command, "there is no top-level method '#{command}'"), command]
    end

    klass_name, _, meth = command.rpartition('.')
    klass = Object.const_get(klass_name)
    if klass.is_a?(Class) && klass.public_method_defined?(meth)
      init_args, init_kwargs = bind(klass.instance_method(:initialize), params, "#{klass_name}#initialize")
      instance = klass.new(*init_args, **init_kwargs)
      return [instance.method(meth), "#{klass_name}##{meth}"]
    end
    # Like Digdag's `klass.send(meth)`: private and inherited methods resolve too, e.g.
    # `Mod::Klass.meth` reaching a top-level `def meth` (a private method of Object).
    kind = klass.is_a?(Class) ? 'class' : 'module'
    [method_of(klass, meth, "#{klass_name} has no method '#{meth}' (neither a public instance method nor a " \
                            "method of the #{kind} itself)"), "#{klass_name}.#{meth}"]
  end

  def method_of(receiver, name, missing)
    raise NoMethodError, missing unless receiver.respond_to?(name, true)

    receiver.method(name)
  end

  # The backtrace of the user's code, without this runner's own frames.
  def user_backtrace(error)
    (error.backtrace || []).reject { |line| line.start_with?(__FILE__) }
  end

  def error_report(error)
    message = error.message
    # Ruby 3.1 quotes the failing line of code in a NameError's message: for an error raised here
    # (resolving METHOD) that line is the runner's, which says nothing to the user.
    raised_here = error.backtrace&.first&.start_with?(__FILE__)
    message = error.original_message if raised_here && error.respond_to?(:original_message)
    { 'class' => error.class.name || error.class.inspect, 'message' => message, 'backtrace' => user_backtrace(error) }
  end

  # Define DigdagEnv's constants as the hashes of env.
  def define_constants(env)
    { PARAMS: env.params, SUBTASK_CONFIG: env.subtask_config, EXPORT_PARAMS: env.export_params,
      STORE_PARAMS: env.store_params, STATE_PARAMS: env.state_params }.each do |name, hash|
      DigdagEnv.send(:remove_const, name) if DigdagEnv.const_defined?(name, false) # a subtask's env
      DigdagEnv.const_set(name, hash)
    end
  end

  # The text of OUT_JSON and the error it reports (nil when the task succeeded).
  def output(env, error)
    values = { 'subtask_config' => env.subtask_config, 'export_params' => env.export_params,
               'store_params' => env.store_params }
    begin
      JSON.generate(values)
    rescue StandardError => e
      # Values put into DigdagEnv::STORE_PARAMS (or Digdag.env.store_params) directly skip store's check.
      values = { 'subtask_config' => {}, 'export_params' => {}, 'store_params' => {} }
      error ||= { 'class' => e.class.name, 'backtrace' => [],
                  'message' => "a value stored by the task cannot be written as JSON: #{e.message}" }
    end
    values['error'] = error if error
    [JSON.generate(values), error]
  end

  def run(argv)
    command, in_file, out_file, required = argv
    # Output goes to a pipe, where Ruby buffers it: write it through so that the task log shows
    # each line as it is printed.
    $stdout.sync = true
    $stderr.sync = true
    env = Digdag::Env.new(JSON.parse(File.read(in_file))['params'])
    Digdag.env = env
    define_constants(env)
    $LOAD_PATH.unshift(Dir.pwd)
    error = nil
    exit_code = 0
    begin
      require required if required && !required.empty?
      callable, qualname = resolve(command, env.params)
      args, kwargs = bind(callable, env.params, qualname)
      callable.call(*args, **kwargs)
      run_subtasks(env, env.params)
    rescue SystemExit => e
      unless e.success?
        # An exit status is one byte: 256 would read as success.
        exit_code = e.status.between?(1, 255) ? e.status : 1
        error = error_report(e).merge('message' => "the task called exit(#{e.status})")
      end
    rescue Exception => e # rubocop:disable Lint/RescueException -- every error of the user's code is reported
      exit_code = 1
      error = error_report(e)
    end
    text, error = output(env, error)
    File.write(out_file, text)
    $stdout.flush
    exit_code.zero? && error ? 1 : exit_code
  end
end

exit(DigdagRunner.run(ARGV))
