# The three ways rb> code adds tasks with Digdag.env.add_subtask.

# add_subtask(tasks): a group of tasks, written out
module AsHash
  class Fanout
    def plan
      Digdag.env.store(parts: 2)
    end

    def spread(parts)
      tasks = {}
      parts.times { |i| tasks["+part#{i}"] = { 'rb>': 'AsHash::Fanout.handle', part: i } }
      tasks['_parallel'] = true
      Digdag.env.add_subtask(tasks)
    end

    def handle(part)
      puts "hash form: part #{part} (#{Digdag.env.params['part']}, #{DigdagEnv::PARAMS['part']})"
      Digdag.env.store(last_part: part)
    end
  end
end

# add_subtask(method_name, params): a top-level method
module ByName
  class Fanout
    def spread(parts)
      parts.times { |i| Digdag.env.add_subtask(:handle_by_name, part: i) }
    end
  end
end

def handle_by_name(part)
  puts "method name form: part #{part}"
end

# add_subtask(klass, method_name, params): an instance method
module ByClass
  class Fanout
    def spread(parts)
      parts.times { |i| Digdag.env.add_subtask(Fanout, :handle, part: i) }
    end

    def handle(part)
      puts "class form: part #{part}"
    end
  end
end
